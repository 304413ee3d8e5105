"""Small helpers that belong to no single concern: devices, offline set-up, model loading, image letterboxing."""
