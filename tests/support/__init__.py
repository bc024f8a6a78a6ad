"""Helpers shared by test directories (conftest files hold only fixtures)."""
