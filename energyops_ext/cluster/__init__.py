"""Coordination between several servers sharing one PostgreSQL database."""
