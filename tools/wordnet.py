"""The WordNet 3.0 database for concept names, read by nltk's WordNet reader.

Found at ``$NEUROSLEUTH_WORDNET`` or ``/usr/share/wordnet`` (Debian's ``wordnet-base`` and
``wordnet-sense-index``) and copied once, atomically, to ``<cache>/nltk_data/corpora/wordnet``
with a ``lexnames`` file (nltk refuses links that leave its data root). ``wordnet_status`` says
which database the names come from, or why there is none.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
import warnings
from pathlib import Path

WORDNET_DIRS = ("/usr/share/wordnet",)
# WordNet 3.0's 45 lexicographer files, in file-number order (lexnames(5WN)).
LEXNAMES = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute "
    "noun.body noun.cognition noun.communication noun.event noun.feeling noun.food noun.group "
    "noun.location noun.motive noun.object noun.person noun.phenomenon noun.plant "
    "noun.possession noun.process noun.quantity noun.relation noun.shape noun.state "
    "noun.substance noun.time verb.body verb.change verb.cognition verb.communication "
    "verb.competition verb.consumption verb.contact verb.creation verb.emotion verb.motion "
    "verb.perception verb.possession verb.social verb.stative verb.weather adj.ppl"
).split()


def _install_wordnet(src: Path, root: Path) -> Path:
    dest = root / "corpora" / "wordnet"
    if not (dest / "lexnames").is_file():
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".wordnet-", dir=root))
        for f in src.iterdir():
            if f.is_file():
                shutil.copyfile(f, tmp / f.name)  # a copy: nltk refuses links out of its root
        pos = {"adj": 3, "adv": 4, "noun": 1, "verb": 2}
        (tmp / "lexnames").write_text(
            "".join(f"{i:02d}\t{n}\t{pos[n.split('.')[0]]}\n" for i, n in enumerate(LEXNAMES)))
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            tmp.rename(dest)  # atomic: two processes never see a half-copied database
        except OSError:  # another process got there first
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


@functools.cache
def wordnet():
    """nltk's WordNet reader over the local WordNet 3.0 database, or None (``wordnet_status``)."""
    status = wordnet_status()
    if not status.startswith("WordNet 3.0"):
        return None
    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    from neurosleuth.tools.model import cache_dir

    root = cache_dir() / "nltk_data"
    dest = _install_wordnet(_wordnet_source(), root)
    if str(root) not in nltk.data.path:
        nltk.data.path.append(str(root))
    class Reader(WordNetCorpusReader):
        """nltk's reader with the sense counts read once into a dict: nltk binary-searches
        ``cntlist.rev`` on disk at every ``Lemma.count()`` (a dozen seeks and line reads a call,
        and the concept and word-class look-ups make thousands)."""

        @functools.cached_property
        def _sense_counts(self) -> dict[str, int]:
            out: dict[str, int] = {}
            with self.open("cntlist.rev") as f:  # "<sense key> <sense number> <count>"
                for line in f:
                    key, _, count = line.rstrip("\n").rpartition(" ")
                    out.setdefault(key.split(" ", 1)[0], int(count))
            return out

        def lemma_count(self, lemma) -> int:
            if lemma._lang != "eng":  # as nltk's: counts are for English lemmas only
                return 0
            return self._sense_counts.get(lemma._key, 0)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Reader(str(dest), None)


def _wordnet_source() -> Path | None:
    for d in filter(None, (os.environ.get("NEUROSLEUTH_WORDNET"), *WORDNET_DIRS)):
        if (Path(d) / "data.noun").is_file() and (Path(d) / "index.noun").is_file():
            return Path(d)
    return None


@functools.cache
def wordnet_status() -> str:
    """One line: which WordNet the names come from, or why there is none."""
    try:
        import nltk  # noqa: F401
    except ImportError:
        return "no WordNet: nltk is not installed (pip install nltk)"
    src = _wordnet_source()
    if src is None:
        return ("no WordNet: database not found (apt-get install wordnet-base "
                "wordnet-sense-index, or set NEUROSLEUTH_WORDNET)")
    sense = "with sense counts" if (src / "index.sense").is_file() else "without sense counts"
    return f"WordNet 3.0 ({sense})"
