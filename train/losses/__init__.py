"""Loss functions and set-prediction criteria shared by the AVS models."""
