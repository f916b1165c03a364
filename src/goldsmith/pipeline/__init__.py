"""Stages, gates and promotion: the order things happen in."""
