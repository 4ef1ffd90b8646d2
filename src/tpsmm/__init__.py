"""Thin-Plate Spline Motion Model for Image Animation."""
