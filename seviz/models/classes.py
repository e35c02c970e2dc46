"""Resolve the classes a user asks for (``--classes goldfish,pug``) to model outputs.

For ImageNet models, names come from timm's ImageNet info: every WordNet lemma
of a class is accepted (``pug`` and ``pug-dog``), as are WordNet ids
(``n02110958``) and output indices. A name is refused as ambiguous when it
names several classes: two classes share it (``crane``: a bird and a
machine), or it is the last word of another class's name (``plane`` is the
carpenter's tool n03954731, but also ends ``military plane``, the warplane).
Other models use their own class names (``cat``, ``dog`` for the demo model).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from seviz.errors import ClassResolutionError


class HasClasses(Protocol):
    """A model's outputs by name: a :class:`~seviz.models.LoadedModel`, or :class:`ModelClasses` before one is built."""

    @property
    def class_names(self) -> Sequence[str]: ...

    @property
    def class_ids(self) -> Sequence[str] | None: ...


@dataclass(frozen=True)
class ModelClasses:
    """The classes a model will have, known without building it (``seviz.models.classes_before_building``)."""

    class_names: tuple[str, ...]
    class_ids: tuple[str, ...] | None = None  # WordNet ids for ImageNet classes


@dataclass(frozen=True)
class ClassRef:
    """One model output chosen for recording."""

    index: int
    name: str
    id: str | None = None  # WordNet id for ImageNet classes

    def describe(self) -> str:
        return f"{self.name!r} ({self.id})" if self.id else repr(self.name)


_WNID = re.compile(r"^n\d{8}$")


def _normalise(text: str) -> str:
    return re.sub(r"[\s_]+", " ", text.strip().lower())


def split_class_list(text: str | Sequence[str] | None) -> list[str]:
    """``"goldfish, pug"`` -> ``["goldfish", "pug"]`` (lists pass through)."""
    if text is None:
        return []
    parts = text.split(",") if isinstance(text, str) else list(text)
    return [p.strip() for p in parts if p.strip()]


class ClassSpace:
    """The names a model's outputs answer to."""

    def __init__(self, loaded: HasClasses) -> None:
        self.loaded = loaded
        self.synonyms: list[list[str]] = []
        if loaded.class_ids is not None:  # ImageNet (1k, 12k, 22k, ...): synonyms by WordNet id
            from timm.data import ImageNetInfo

            info = ImageNetInfo()  # its descriptions cover the synsets of every ImageNet subset
            for class_id in loaded.class_ids:
                description = info.label_name_to_description(class_id)
                self.synonyms.append([s.strip() for s in description.split(",") if s.strip()])
        else:
            self.synonyms = [[name] for name in loaded.class_names]
        self._exact: dict[str, list[int]] = {}
        self._head: dict[str, list[int]] = {}
        for index, names in enumerate(self.synonyms):
            for name in names:
                key = _normalise(name)
                self._exact.setdefault(key, []).append(index)
                words = key.split(" ")
                if len(words) > 1:
                    self._head.setdefault(words[-1], []).append(index)

    def ref(self, index: int) -> ClassRef:
        ids = self.loaded.class_ids
        return ClassRef(index, self.loaded.class_names[index], ids[index] if ids else None)

    def _describe(self, index: int) -> str:
        ids = self.loaded.class_ids
        label = ", ".join(self.synonyms[index])
        return f"{ids[index]} ({label})" if ids else f"{index} ({label})"

    def resolve(self, text: str) -> ClassRef:
        """One class from a name, synonym, WordNet id or output index."""
        term = text.strip()
        count = len(self.loaded.class_names)
        if term.isdigit():
            index = int(term)
            if index >= count:
                raise ClassResolutionError(
                    f"class index {index} is out of range: the model has {count} classes"
                )
            return self.ref(index)
        ids = self.loaded.class_ids
        if ids and _WNID.match(term):
            if term not in ids:
                raise ClassResolutionError(
                    f"WordNet id {term!r} is not one of the model's {count} ImageNet classes"
                )
            return self.ref(ids.index(term))
        key = _normalise(term)
        exact = list(dict.fromkeys(self._exact.get(key, [])))
        candidates = list(dict.fromkeys(exact + self._head.get(key, [])))
        if len(exact) == 1 and len(candidates) == 1:
            return self.ref(exact[0])
        if candidates:
            listed = "; ".join(self._describe(i) for i in candidates[:12])
            more = f" and {len(candidates) - 12} more" if len(candidates) > 12 else ""
            raise ClassResolutionError(
                f"class {term!r} is ambiguous: it names {listed}{more}. "
                "Pass the WordNet id or index, or a more specific name"
            )
        close = difflib.get_close_matches(key, list(self._exact), n=3, cutoff=0.6)
        if close:
            hints = ", ".join(f"{c!r} ({self._describe(self._exact[c][0]).split(' (')[0]})" for c in close)
            raise ClassResolutionError(f"unknown class {term!r}; did you mean {hints}?")
        raise ClassResolutionError(
            f"unknown class {term!r}: the model's classes are "
            + (", ".join(self.loaded.class_names[:10]) + (" ..." if count > 10 else ""))
        )

    def folder_class(self, folder: str) -> int | None:
        """The class a data folder holds (a WordNet id or a class name), or None."""
        ids = self.loaded.class_ids
        if ids and folder in ids:
            return ids.index(folder)
        indices = list(dict.fromkeys(self._exact.get(_normalise(folder), [])))
        if len(indices) == 1:
            return indices[0]
        if folder.isdigit() and int(folder) < len(self.loaded.class_names) and not ids:
            return int(folder)
        return None


def resolve_classes(requested: str | Sequence[str] | None, loaded: HasClasses) -> list[ClassRef]:
    """Resolve a comma-separated list (or sequence) of class names for ``loaded``.

    Raises:
        ClassResolutionError: A name is unknown (with close matches) or ambiguous
            (with the candidates), is given twice, or the list names no class at
            all (``""``, ``","``: which is not "every class").
    """
    terms = split_class_list(requested)
    if requested is not None and not terms:
        raise ClassResolutionError(
            f"--classes {requested!r} names no class; list classes (goldfish,pug), or drop --classes "
            "to use every class"
        )
    space = ClassSpace(loaded)
    refs: list[ClassRef] = []
    for term in terms:
        ref = space.resolve(term)
        if any(r.index == ref.index for r in refs):
            raise ClassResolutionError(f"class {term!r} is given twice (it is {ref.describe()})")
        refs.append(ref)
    return refs
