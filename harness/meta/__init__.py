"""Meta stage: the harness proves itself on a population of healthy models and a zoo of known defects.

``families.py`` names the healthy population (three architecture families, three seeds each),
``defects.py`` the defect zoo (shortcut models, shuffled labels, randomised or under-trained
weights, model-independent or broken explainers, a checkpoint pair from two seeds, a shortcut
nobody annotated), ``subjects.py`` builds each one as a ModelContext, ``evaluate.py`` runs a suite's
items on a split, ``calibrate.py`` proposes thresholds from the ``calib`` split, and ``matrix.py``
turns the verdicts on ``test`` into a detection matrix with each check's sensitivity and
false-fail rate. ``xai-harness calibrate`` and ``xai-harness meta`` are the front ends.
"""
