"""Neural-network training parts shared by the denoiser and the model zoo."""
