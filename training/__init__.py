"""The Ray jobs of HYDRA training: `hydralm labels`, `hydralm train`, `hydralm fit-users`.

Entry points: `training.stages` (labels_stage, train_stage, fit_stage: what the commands and the
quality benchmark call) and `training.cli` (the commands). The modules are imported one by one,
not re-exported here, so that `import training.llm` or a command's help does not load torch.
See docs/training.md.
"""
