"""`costmodel lint`: the four ShuffleNetV2 guidelines (Ma et al., 2018) as checks on an op graph,
each finding priced in MAC by the cost formulas. `rules.lint` runs them, `render` prints them,
`settings` holds the thresholds. Kept import-free so the command line stays fast."""
