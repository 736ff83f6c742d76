"""The results schema and everything that reads or writes results: atomic writes and
validation, merging passes, importers of other fronts' results, units for display."""
