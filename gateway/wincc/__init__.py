"""Clients for the WinCC server, one module per dialect behind one interface."""
