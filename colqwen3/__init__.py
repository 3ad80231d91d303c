"""ColQwen3 toolkit: everything around the remote code (indexing and search, vLLM serving, the offline test kit).

The model itself is the remote code at the repository root (`configuration_colqwen3`, `modeling_colqwen3`,
`processing_colqwen3`, `scoring_colqwen3`), installed beside this package as top-level modules.
"""

__version__ = "0.2.0"
