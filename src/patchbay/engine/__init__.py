"""The local tool engine: query / get / create / update / delete at a JSON pointer of a stored document."""
