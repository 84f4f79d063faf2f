"""The recurrent pose head both motion modules share (the paper's Fig. 3, after the image features)."""

from __future__ import annotations

import torch
import torch.nn as nn

# Network outputs of order 1 correspond to these motions; hand-held poses within 0.1 s of the reference are
# typically a few hundredths of a radian and a few centimetres.
ROTATION_SCALE = 0.05  # radians
TRANSLATION_SCALE = 0.05  # metres


class PoseLSTMHead(nn.Module):
    """Features (B, F) -> rotations u and translations v, each (B, 2n, 3), in time order.

    As in image captioning: Linear 1 maps the image features to the LSTM's first input; at every later step,
    Linear 3 maps the previous step's pose (6 numbers) to the input. Linear 2 reads each step's pose from the hidden
    state; the LSTM's weights are shared across the 2n steps.
    """

    def __init__(self, in_features: int, n: int = 3, hidden: int = 512):
        super().__init__()
        self.steps = 2 * n
        self.linear1 = nn.Linear(in_features, hidden)
        self.lstm = nn.LSTMCell(hidden, hidden)
        self.linear2 = nn.Linear(hidden, 6)
        self.linear3 = nn.Linear(6, hidden)
        nn.init.zeros_(self.linear2.bias)
        self.linear2.weight.data.mul_(0.1)  # start near "no motion"

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.linear1(features)
        state = None
        poses = []
        for _ in range(self.steps):
            h, c = self.lstm(x, state)
            state = (h, c)
            pose = self.linear2(h)
            poses.append(pose)
            x = self.linear3(pose)
        p = torch.stack(poses, dim=1)
        return p[..., :3] * ROTATION_SCALE, p[..., 3:] * TRANSLATION_SCALE
