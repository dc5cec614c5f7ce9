"""An import-linter contract for parts of an external package (PySide6.QtWidgets).

import-linter's ``forbidden`` contract takes only top-level external packages,
but the house allows ``console`` QtCore and forbids it QtWidgets and QtGui.
grimp keeps the line of each import, so this contract reads which part of the
external package each direct import names.
"""

from __future__ import annotations

from importlinter import Contract, ContractCheck, fields, output


class ForbiddenPartsContract(Contract):
    """``source_modules`` may import ``package`` but none of its ``forbidden_parts``."""

    source_modules = fields.ListField(subfield=fields.ModuleField())
    package = fields.StringField()
    forbidden_parts = fields.ListField(subfield=fields.StringField())

    def check(self, graph, verbose: bool) -> ContractCheck:
        package = str(self.package)
        parts = [str(p) for p in self.forbidden_parts]
        found = []
        for source in self.source_modules:
            names = {source.name} | graph.find_descendants(source.name)
            for importer in sorted(names):
                if package not in graph.find_modules_directly_imported_by(importer):
                    continue
                for d in graph.get_import_details(importer=importer, imported=package):
                    line = d["line_contents"]
                    hit = [p for p in parts if f"{package}.{p}" in line or
                           (line.startswith(f"from {package} import") and p in line)]
                    if hit:
                        found.append((importer, d["line_number"], line))
        return ContractCheck(kept=not found, metadata={"found": found})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for importer, line_number, line in check.metadata["found"]:
            output.print_error(f"{importer}:{line_number}: {line}", bold=False)
            output.new_line()
