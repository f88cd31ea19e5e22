"""Audience pages: contacts, lists, segments (segments.py: the segment editor and its live count)."""
