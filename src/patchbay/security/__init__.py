"""Cryptographic building blocks: encryption of stored secrets, password hashing."""
