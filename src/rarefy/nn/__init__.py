"""Neural-network training parts shared by the denoiser and the model zoo.

:mod:`~rarefy.nn.trainer` (the one resumable epoch loop) with its small siblings
:mod:`~rarefy.nn.early_stopping`, :mod:`~rarefy.nn.schedule` (learning rates),
:mod:`~rarefy.nn.checkpoint`, :mod:`~rarefy.nn.board` (TensorBoard) and
:mod:`~rarefy.nn.seeding`; the batch pieces :mod:`~rarefy.nn.sampling` (imbalance
schedule), :mod:`~rarefy.nn.mixup` and :mod:`~rarefy.nn.losses`. Nothing here imports
the config, the denoiser or the zoo.
"""
