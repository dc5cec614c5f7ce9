"""The evaluation (综合评价) panel and the shift handover dialog."""
