"""unigen's VAE family: VAE, beta-VAE, VQ-VAE and FSQ."""
