"""The one training loop: fine-tuning and pruning recovery (plain, distilled, feature-distilled) both run
`loop.Trainer`, on the accelerator `settings.TrainingSettings` names, in one process or under torchrun."""
