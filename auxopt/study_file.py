"""Study files: a Python file that defines a :class:`~auxopt.StudySpec` or a pipeline (``auxopt run FILE``).

It sits above both :mod:`auxopt.study` and :mod:`auxopt.pipelines`, which builds on the study, so
that neither imports the other's dependants.
"""

from __future__ import annotations

import runpy
from pathlib import Path

from auxopt.errors import AuxoptError
from auxopt.pipelines import AutoSeM
from auxopt.study import StudySpec, _describe_exception


def load_study_file(path: str | Path) -> StudySpec:
    """Run a study file and return the study it defines: a ``StudySpec`` or a pipeline such as
    :class:`~auxopt.pipelines.AutoSeM`, named ``study`` (or the only one in the file)."""
    kinds = (StudySpec, AutoSeM)

    path = Path(path)
    if not path.is_file():
        raise AuxoptError(f"study file {str(path)!r} does not exist")
    if path.suffix != ".py":
        raise AuxoptError(f"study file {str(path)!r} is not a Python file")
    try:
        namespace = runpy.run_path(str(path), run_name="__auxopt_study__")
    except AuxoptError:
        raise
    except SyntaxError as e:  # the user's file (or a module it imports) does not parse
        where = f"{e.filename or path}, line {e.lineno}" if e.lineno else str(e.filename or path)
        line = (e.text or "").rstrip("\n")
        caret = ""
        if line and e.offset:
            indent = len(line) - len(line.lstrip())
            caret = "\n    " + " " * max(0, e.offset - 1 - indent) + "^"
        shown = f"\n    {line.strip()}{caret}" if line.strip() else ""
        raise AuxoptError(f"study file {where}: {type(e).__name__}: {e.msg}{shown}") from None
    except Exception as e:
        raise AuxoptError(
            f"study file {str(path)!r} raised {_describe_exception(e, files=(str(path.resolve()),))}"
        ) from None
    specs = [v for v in namespace.values() if isinstance(v, kinds)]
    spec = namespace.get("study") if isinstance(namespace.get("study"), kinds) else None
    if spec is None:
        if len(specs) != 1:
            raise AuxoptError(
                f"study file {str(path)!r} must define one auxopt.StudySpec (or AutoSeM pipeline) named 'study' "
                f"(found {len(specs)})"
            )
        spec = specs[0]
    if spec.source_file is None:
        spec.source_file = str(path.resolve())
    return spec
