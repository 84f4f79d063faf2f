"""world-from-blur: camera motion, a sharp frame, metric depth and a 3D scene from one motion-blurred photograph.

The package is layered; a module imports only from its own subpackage and from lower layers, never upwards, and
there is no import circle (``tests/test_package.py`` checks both):

0. ``errors`` (the one-line errors every command reports), ``shipped`` (the names of the shipped configs and recipes)
1. ``devices``, ``imaging`` (the sRGB curve, frame averaging, the exposure description)
2. ``geometry`` (poses, projection, depth warps, re-blur)
3. ``viz``, ``losses``, ``pose_solve``, ``checkpoint``
4. ``data`` (the dataset format, builders, frame pools, the blur stream)
5. ``models`` (the networks, the motion-head interface, the cycle, model files)
6. ``reconstruct`` (``wfb reconstruct``'s pipeline and its test-time refinement)
7. ``evaluation`` (metrics, the evaluator, reports, rotation axes on real blur from video; it scores the refined
   trajectory as ``wfb reconstruct`` gives it)
8. ``training`` (configs, recipes, data sources, the trainer)
9. ``cli`` (the ``wfb`` commands; the only place that imports inside functions, to keep ``wfb --help`` fast)
"""

__version__ = "0.1.0"
