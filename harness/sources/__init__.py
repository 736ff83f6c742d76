"""What is measured: the model zoo, a user's own model file, evaluation rows, and the
persistence formats (with their optional extras)."""
