"""Synthetic handwriting lines rendered on the fly with PIL from handwriting fonts.

Fonts: the ``fontpkg-*`` pip packages (Google Fonts handwriting families, OFL), found through
``fontpkg.families()``; with ``system_fonts=True`` the Debian handwriting font packages of
``SYSTEM_HANDWRITING_FONTS`` that are installed join the *training* fonts, one family per package
(off by default so that the data set is the same on every machine; missing packages are named in a
warning with the apt-get line that installs them).

Writer-independent split: each font family is a "writer". The families of ``val_fonts`` (default
``indie-flower`` and ``satisfy``: one print-like, one connected script) render only the validation
lines and never appear in training; all other families render training lines.

Text: faker (``en_US`` and ``fr_FR``): sentences of real words, names, addresses, dates, numbers, phone
numbers, companies, with mixed casing and punctuation; normalised, then restricted to the codec's
charset and to the characters the chosen font has a glyph for (fontTools cmap), so no font is asked
for a character it would draw as a box.

Determinism: sample ``i`` of a split depends only on (seed, split, i): its own ``random.Random``, numpy
generator and faker seed. The same index gives the same pixels in any process or data-loader worker,
and an epoch is a fixed set of ``train_size`` / ``val_size`` lines.

Rendering: the text is drawn as an ink-coverage mask on a canvas that holds the glyphs' ink box,
slanted and rotated in one resampling onto a canvas that holds the whole result, then cropped to the
mask's bounding box plus ``pad`` px: ascenders, descenders, slant and rotation are never cut. The
mask is then composited with random paper and ink gray levels, optional blur and background noise.
"""
from __future__ import annotations

import logging
import math
import random
import string
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from htr.data.augment import Augmenter
from htr.data.dataset import LineDataset
from htr.data.images import PreprocessConfig
from htr.errors import DatasetError
from htr.text.codec import Codec, normalize_text

log = logging.getLogger(__name__)
# fonts-femkeklaver's glyph-name table ends in one stray byte, which fontTools reports as a warning.
logging.getLogger("fontTools.ttLib.tables._p_o_s_t").setLevel(logging.ERROR)

SYSTEM_FONT_DIR = Path("/usr/share/fonts")
# Debian handwriting font packages: the folder each installs under SYSTEM_FONT_DIR/{truetype,opentype}
# -> package name. Left out: fonts-ecolier-lignes-court (its glyphs draw ruled lines); capitals-only
# fonts, whose lower case would teach capital shapes for small letters (fonts-humor-sans, fonts-bwht,
# fonts-tomsontalks); fonts-levien-typoscript (most lower-case letters missing); fonts-joscelyn (a
# 16th-century secretary hand). fonts-rufscript and fonts-havana lack accented letters: their lines
# are drawn from the characters they have.
SYSTEM_HANDWRITING_FONTS = {
    "fifthhorseman": "fonts-dkg-handwriting", "sjfonts": "fonts-sjfonts", "kristi": "fonts-kristi",
    "breip": "fonts-breip", "ecolier-court": "fonts-ecolier-court", "femkeklaver": "fonts-femkeklaver",
    "comic-neue": "fonts-comic-neue", "kaushanscript": "fonts-kaushanscript", "rufscript": "fonts-rufscript",
    "leckerli-one": "fonts-leckerli-one", "lobster": "fonts-lobster", "klee": "fonts-klee",
    "havana": "fonts-havana", "yusei-magic": "fonts-yusei-magic",
}
_REQUIRED = set(string.ascii_letters + string.digits)  # a font lacking these is not used at all


@dataclass(frozen=True)
class FontSpec:
    """One font file; ``family`` is the writer identity used for the train/val split."""

    family: str
    path: Path
    weights: tuple[int, int] | None = None  # wght axis range of a variable font

    def __str__(self) -> str:
        return f"{self.family} ({self.path.name})"


@lru_cache(maxsize=None)
def font_coverage(path: Path) -> frozenset[str]:
    """Characters with a glyph in the font's best cmap."""
    from fontTools.ttLib import TTFont

    with TTFont(str(path), lazy=True) as f:
        return frozenset(chr(c) for c in f.getBestCmap())


def discover_fonts(system_fonts: bool = False) -> list[FontSpec]:
    """Installed handwriting fonts, in a fixed order (family, file name)."""
    import fontpkg

    fonts = []
    for slug, fam in sorted(fontpkg.families().items()):
        for ff in sorted(fam.files, key=lambda f: f.path.name):
            weights = (ff.wght_min, ff.wght_max) if ff.variable and ff.wght_min is not None else None
            fonts.append(FontSpec(slug, Path(ff.path), weights))  # type: ignore[arg-type]
    if system_fonts:
        fonts += system_handwriting_fonts()
    usable = []
    for f in fonts:
        try:
            missing = _REQUIRED - font_coverage(f.path)
        except Exception as e:  # a broken font file must not stop training: leave it out, say so
            log.warning("font %s unreadable (%s); not used", f.path, e)
            continue
        if missing:
            log.warning("font %s lacks %s; not used", f, "".join(sorted(missing)))
            continue
        usable.append(f)
    return usable


def system_handwriting_fonts(root: Path = SYSTEM_FONT_DIR) -> list[FontSpec]:
    """The installed fonts of SYSTEM_HANDWRITING_FONTS, family ``system-<folder>``; warns about the rest."""
    found: dict[str, list[Path]] = {}
    for p in sorted(root.glob("*/*/*")):  # <root>/{truetype,opentype}/<folder>/<file>
        if p.suffix.lower() in (".ttf", ".otf") and p.parent.name in SYSTEM_HANDWRITING_FONTS:
            found.setdefault(p.parent.name, []).append(p)
    missing = [pkg for folder, pkg in SYSTEM_HANDWRITING_FONTS.items() if folder not in found]
    if missing:
        log.warning("system_fonts: %d of %d Debian handwriting font packages are not installed under %s; "
                    "training uses fewer fonts. Install them with: apt-get install %s",
                    len(missing), len(SYSTEM_HANDWRITING_FONTS), root, " ".join(missing))
    return [FontSpec("system-" + folder, p) for folder in sorted(found) for p in found[folder]]


@dataclass
class SyntheticConfig:
    """What the synthetic lines look like. Defaults give lines like modern handwriting on clean paper."""

    seed: int = 0
    train_size: int = 20_000  # lines per training epoch (indices 0..train_size-1, always the same lines)
    val_size: int = 1_000
    val_fonts: tuple[str, ...] = ("indie-flower", "satisfy")  # families held out for validation
    system_fonts: bool = False  # add the installed SYSTEM_HANDWRITING_FONTS to the training fonts
    locales: tuple[str, ...] = ("en_US", "fr_FR")
    min_chars: int = 6
    max_chars: int = 60
    font_size: tuple[int, int] = (36, 60)  # px, inclusive range
    slant: float = 0.3  # max |horizontal shear| (x shift per px of height)
    rotate_deg: float = 1.5
    stroke_p: float = 0.25  # probability of a thicker pen (stroke width 1)
    paper: tuple[int, int] = (190, 255)  # paper gray range
    ink: tuple[int, int] = (0, 100)  # ink gray range
    blur_p: float = 0.3
    noise_std: tuple[float, float] = (0.0, 8.0)
    pad: tuple[int, int] = (4, 12)  # px kept around the ink after cropping
    case_p: float = 0.1  # probability each of an all-upper and an all-lower line


class TextSampler:
    """Faker-backed line texts; one Faker per locale, created lazily in each process."""

    KINDS = ("sentence", "sentence", "sentence", "words", "name", "address", "date", "number", "phone",
             "company", "city")
    DATE_PATTERNS = ("%d/%m/%Y", "%d.%m.%y", "%Y-%m-%d", "%d %B %Y", "%B %d, %Y", "%A %d %B")
    DATE_END = 1_767_225_600  # 2026-01-01 UTC: Faker's dates run from 1970 to "now" unless given an end,
                              # which made the lines (validation included) change with the clock

    def __init__(self, locales: Sequence[str]) -> None:
        self.locales = tuple(locales)
        self._fakers: dict[str, Any] = {}

    def _faker(self, locale: str) -> Any:
        if locale not in self._fakers:
            from faker import Faker

            self._fakers[locale] = Faker(locale)
        return self._fakers[locale]

    def piece(self, fake: Any, rng: random.Random) -> str:
        kind = rng.choice(self.KINDS)
        if kind == "sentence":
            s = fake.sentence(nb_words=rng.randint(3, 9))
        elif kind == "words":
            s = " ".join(fake.words(rng.randint(2, 6)))
        elif kind == "name":
            s = fake.name()
        elif kind == "address":
            s = fake.address().replace("\n", ", ")
        elif kind == "date":
            s = fake.date(pattern=rng.choice(self.DATE_PATTERNS), end_datetime=self.DATE_END)
        elif kind == "number":
            s = rng.choice([str(fake.pyint(0, 99999)), f"{rng.uniform(0, 9999):.2f}",
                            f"{rng.randint(1, 999)},{rng.randint(0, 99):02d} €", f"{rng.randint(1, 100)} %",
                            f"n° {rng.randint(1, 500)}", f"{rng.randint(1, 40)}°"])
        elif kind == "phone":
            s = fake.phone_number()
        elif kind == "company":
            s = fake.company()
        else:
            s = f"{fake.postcode()} {fake.city()}"
        r = rng.random()  # punctuation and quotes around some pieces
        if r < 0.08:
            s = f"« {s} »" if fake.locales[0].startswith("fr") else f'"{s}"'
        elif r < 0.14:
            s = f"({s})"
        elif r < 0.3:
            s = s.rstrip(".") + rng.choice([",", ";", ":", " !", "?", "...", " -", "’s"])
        return s

    def line(self, rng: random.Random, allowed: set[str] | frozenset[str], min_chars: int, max_chars: int,
             case_p: float) -> str:
        """A line of min_chars..max_chars characters (at word boundaries), only of ``allowed`` characters."""
        fake = self._faker(rng.choice(self.locales))
        fake.seed_instance(rng.getrandbits(32))
        target = rng.randint(min_chars, max_chars)
        text = ""
        for _ in range(20):
            piece = normalize_text("".join(ch for ch in normalize_text(self.piece(fake, rng)) if ch in allowed))
            if piece:
                text = f"{text}{rng.choice([' ', ' ', ', ', ' - '])}{piece}" if text else piece
            if len(text) >= target:
                break
        if len(text) > max_chars:  # cut at the last space before max_chars when there is one
            cut = text.rfind(" ", min_chars, max_chars + 1)
            text = text[: cut if cut > 0 else max_chars]
        r = rng.random()
        if r < case_p:
            text = text.upper()
        elif r < 2 * case_p:
            text = text.lower()
        text = normalize_text("".join(ch for ch in text if ch in allowed))  # upper() can leave the charset
        return text or "".join(rng.choice(sorted(_REQUIRED & allowed)) for _ in range(min_chars))


INK_MARGIN = 4  # px of empty canvas around the glyphs' ink box, and around the slanted, rotated mask
                # (room for the bilinear kernel and the optional blur's tail, sigma <= 1 px)


def shear_and_rotate(mask: Image.Image, slant: float, angle_deg: float) -> Image.Image:
    """Slant (x shifts by -slant px per px of height, about the middle row), then rotate by angle_deg
    (counter-clockwise), in one bilinear resampling onto a canvas that holds the whole input: no ink
    is cut, and no pixel is spent on margins the ink never reaches."""
    w, h = mask.size
    cos, sin = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    forward = np.array([[cos, sin], [-sin, cos]]) @ np.array([[1.0, -slant], [0.0, 1.0]])  # rotation @ shear
    corners = np.array([[-w, -h], [w, -h], [-w, h], [w, h]]) / 2 @ forward.T  # about the centre
    low = corners.min(axis=0) - INK_MARGIN
    size = np.ceil(corners.max(axis=0) + INK_MARGIN - low).astype(int)
    inverse = np.linalg.inv(forward)  # PIL maps each output pixel back to the input
    offset = inverse @ low + np.array([w, h]) / 2
    data = (inverse[0, 0], inverse[0, 1], offset[0], inverse[1, 0], inverse[1, 1], offset[1])
    return mask.transform((int(size[0]), int(size[1])), Image.Transform.AFFINE, data,
                          resample=Image.Resampling.BILINEAR, fillcolor=0)


class Renderer:
    """Draws a text line with a font into a uint8 grayscale image. Fonts cached per (file, size)."""

    def __init__(self, config: SyntheticConfig) -> None:
        self.cfg = config
        self._fonts: dict[tuple[Path, int], ImageFont.FreeTypeFont] = {}

    def font(self, spec: FontSpec, size: int) -> ImageFont.FreeTypeFont:
        key = (spec.path, size)
        if key not in self._fonts:
            self._fonts[key] = ImageFont.truetype(str(spec.path), size)
        return self._fonts[key]

    def draw(self, text: str, font: ImageFont.FreeTypeFont, stroke: int) -> Image.Image:
        """The text's ink-coverage mask (0..255) with INK_MARGIN px of empty canvas on each side."""
        left, top, right, bottom = font.getbbox(text, stroke_width=stroke)  # the glyphs' ink box
        mask = Image.new("L", (right - left + 2 * INK_MARGIN, bottom - top + 2 * INK_MARGIN), 0)
        ImageDraw.Draw(mask).text((INK_MARGIN - left, INK_MARGIN - top), text, font=font, fill=255,
                                  stroke_width=stroke, stroke_fill=255)
        return mask

    def render(self, text: str, spec: FontSpec, rng: np.random.Generator) -> np.ndarray:
        c = self.cfg
        size = int(rng.integers(c.font_size[0], c.font_size[1] + 1))
        font = self.font(spec, size)
        if spec.weights is not None:  # a variable font: random pen weight (set on every call: the object is shared)
            font.set_variation_by_axes([int(rng.integers(spec.weights[0], spec.weights[1] + 1))])
        stroke = int(rng.random() < c.stroke_p)
        slant = float(rng.uniform(-c.slant, c.slant))
        angle = float(rng.uniform(-c.rotate_deg, c.rotate_deg))
        mask = shear_and_rotate(self.draw(text, font, stroke), slant, angle)
        if rng.random() < c.blur_p:
            mask = mask.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 1.0))))
        box = mask.getbbox()
        if box is None:
            raise DatasetError(f"font {spec} drew nothing for {text!r}")
        pad = int(rng.integers(c.pad[0], c.pad[1] + 1))
        # crop past the canvas edge is filled with 0 (no ink)
        mask = mask.crop((box[0] - pad, box[1] - pad, box[2] + pad, box[3] + pad))
        m = np.asarray(mask, dtype=np.float32) / 255.0  # (H, W) ink coverage
        paper = float(rng.integers(c.paper[0], c.paper[1] + 1))
        ink = float(rng.integers(c.ink[0], c.ink[1] + 1))
        img = paper + (ink - paper) * m
        std = float(rng.uniform(*c.noise_std))
        if std > 0:
            img = img + std * rng.standard_normal(img.shape, dtype=np.float32)
        return np.clip(img + 0.5, 0, 255).astype(np.uint8)


class SyntheticLineDataset(LineDataset):
    """``size`` synthetic lines of one split ("train" or "val"), same items as LineDataset."""

    def __init__(self, split: Literal["train", "val"], codec: Codec, config: SyntheticConfig | None = None,
                 preprocess_config: PreprocessConfig | None = None, augmenter: Augmenter | None = None,
                 fonts: Sequence[FontSpec] | None = None) -> None:
        super().__init__([], codec, preprocess_config, augmenter)
        self.cfg = cfg = config or SyntheticConfig()
        if split not in ("train", "val"):
            raise ValueError(f"split={split!r}; expected 'train' or 'val'")
        self.split = split
        all_fonts = list(fonts) if fonts is not None else discover_fonts(cfg.system_fonts)
        families = {f.family for f in all_fonts}
        absent = [v for v in cfg.val_fonts if v not in families]
        if absent:
            raise DatasetError(f"validation fonts {absent} are not installed; installed families: {sorted(families)}")
        held_out = set(cfg.val_fonts)
        chosen = [f for f in all_fonts if (f.family in held_out) == (split == "val")]
        if not chosen:
            raise DatasetError(f"no fonts for the synthetic {split} split (val_fonts={cfg.val_fonts}, "
                               f"installed: {sorted(families)})")
        self.fonts = chosen
        self.families = sorted({f.family for f in chosen})
        self.size = cfg.train_size if split == "train" else cfg.val_size
        self.texts = TextSampler(cfg.locales)
        self.renderer = Renderer(cfg)
        # Validation lines are the same at every validation (no augmentation): render each once per
        # process (a persistent loader worker keeps them) and keep its uint8 image, ~40 KB a line.
        self._rendered: dict[int, tuple[np.ndarray, str]] | None = {} if split == "val" else None
        self.stats.update({"source": f"synthetic-{split}", "read": self.size, "kept": self.size,
                           "fonts": [str(f) for f in chosen]})

    def __len__(self) -> int:
        return self.size

    def sample_id(self, index: int) -> str:
        return f"synth-{self.split}-{self.cfg.seed}-{index:06d}"

    def render(self, index: int) -> tuple[np.ndarray, str, FontSpec]:
        """(uint8 image, text, font) of line ``index``: a pure function of (seed, split, index)."""
        if not 0 <= index < self.size:
            raise IndexError(f"synthetic index {index} out of range 0..{self.size - 1}")
        rng = random.Random(f"{self.cfg.seed}:{self.split}:{index}")
        family = rng.choice(self.families)  # a family per line, then one of its files (Kalam has three weights)
        spec = rng.choice([f for f in self.fonts if f.family == family])
        allowed = font_coverage(spec.path) & set(self.codec.charset)
        text = self.texts.line(rng, allowed, self.cfg.min_chars, self.cfg.max_chars, self.cfg.case_p)
        image = self.renderer.render(text, spec, np.random.default_rng(rng.getrandbits(64)))
        return image, text, spec

    def load(self, index: int) -> tuple[Image.Image, str, str]:
        if self._rendered is not None and index in self._rendered:
            image, text = self._rendered[index]
        else:
            image, text, _ = self.render(index)
            if self._rendered is not None:
                self._rendered[index] = image, text
        return Image.fromarray(image, "L"), text, self.sample_id(index)

    def __getstate__(self) -> dict[str, Any]:
        # Faker objects, loaded fonts and rendered lines are rebuilt lazily in each worker; ship only the recipe.
        state = self.__dict__.copy()
        state["texts"] = TextSampler(self.cfg.locales)
        state["renderer"] = Renderer(self.cfg)
        state["_rendered"] = {} if self._rendered is not None else None
        return state
