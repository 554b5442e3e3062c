"""Pipeline steps: each module is a library function, a CLI and a kfp component."""
