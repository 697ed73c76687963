from tests.evidence.records import records

__all__ = ["records"]
