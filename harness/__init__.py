"""xai-harness: pytest for the explanations of medical-imaging classifiers.

The package is a pipeline; each stage is one subpackage, and an earlier stage never
imports a later one:

    data      -> synthetic chest radiographs (binary and multi-label) with lesion, lung and artifact
                 masks; loaders for NIH ChestX-ray14, SIIM-ACR, CheXpert, PCam; perturbations
    models    -> architectures (timm, torchvision, truncated), recipes, trainer, checkpoint store, zoo,
                 provisioning (a name to a trained model and its twins, training on first use)
    explain   -> saliency explainers with one contract: Tensor[B,1,H,W], one target per sample; the
                 ModelContext (a model under test with its data and cached maps)
    metrics   -> pure batched torch metrics (performance, localisation, similarity, randomisation,
                 robustness, complexity, faithfulness, statistics), each checked against a reference
    checks    -> a check computes a value with a CI; a condition turns it into a verdict
    suites    -> declarative YAML suites parsed into check specifications
    report    -> results.json, summary.md, overlays, cross-model statistics, the terminal table
    meta      -> the harness proving itself: healthy population, defect zoo, calibration, detection matrix

`harness.plugin` is the pytest front end; `harness.cli` the command line.
"""

__version__ = "0.1.0"
