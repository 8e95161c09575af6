"""xai-harness: pytest for the explanations of medical-imaging classifiers.

The package is a pipeline; each stage is one subpackage, and an earlier stage never
imports a later one:

    data      -> deterministic synthetic chest radiographs with lesion and artifact masks
    models    -> architecture registry over timm, trainer, checkpoint store, model zoo
    explain   -> saliency explainers with one contract: Tensor[B,1,H,W], one target per sample
    metrics   -> pure batched torch metrics (performance, localisation, similarity, statistics)
    checks    -> a check computes a value with a CI; a condition turns it into a verdict
    suites    -> declarative YAML suites parsed into check specifications
    report    -> results.json, summary.md, heatmap overlays, the terminal table

`harness.plugin` is the pytest front end; `harness.cli` the command line.
"""

__version__ = "0.1.0"
