"""Training data: grouped multi-station samples from SeisBench datasets, fixtures and importers."""
