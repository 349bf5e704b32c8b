"""Datasets from manifest.csv, augmentation, training loops, metrics, cross-validation and HPO.

2D modules (the 3D ones are ``data3d``, ``train3d``, ``cli_train3d``, ``inspect3d``):

* ``data``      manifest datasets, ``read_image_grey`` (the canonical image form), tensor cache
* ``augment``   P0 offline ×4, P1, P3, flip and mixed policies;  ``sampling``: shuffle / P3 re-balancing
* ``loop``      ``TrainConfig`` + ``fit`` (deterministic, resumable, EMA, checkpoints, JSONL metrics)
* ``recipes``   polsinelli | garg | abdani | wang | he | lunglens presets
* ``metrics``   spec §6 metrics (positive = COVID), ROC, Student-t / Wilson / Hanley–McNeil intervals
* ``cv``        patient-wise stratified k-fold;  ``hpo``: Optuna study;  ``localize``: pointing game
* ``runner``    glue used by the ``cli_*`` subcommands;  ``ship``: run -> resources/weights
"""
