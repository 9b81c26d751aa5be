"""What to prune: the recipe, its schema and the name registries, validated before anything runs."""
