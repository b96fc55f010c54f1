"""What evaluations return."""
