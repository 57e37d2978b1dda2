"""Scenes: named looks of the show, kept in a TOML file (`--scenes FILE`), recalled live.

    # scenes.toml: one table per scene; keys 1-9 recall the first nine, in this order
    [intro]
    images = ["photos/calm"]    # folders and/or image files, relative to this file; "demo" = bundled
    mode = "magellan"
    interpolation = "slerp"
    temperature = 0.1
    speed = 0.5
    sensitivity = 1.0
    brightness = 0.8
    gen_size = "128x72"
    model = "tuned.pt"          # "lite", "hires", or a checkpoint (.pt), relative to this file
    audience = true             # the audience may choose it (serve --audience); false by default

    ["the drop"]
    mode = "explore"
    speed = 2.0

Every field is optional: a scene changes what it names and leaves the rest as it is, so a
hand-written scene can be as small as one line; a scene saved from the page names them all.
Recalling one is a control on the bus ("scene", name) from the window's keys, the page, OSC
(/flowvj/scene) or MIDI: the engine cross-fades to its images (loaded in the background, as an
image-set switch is) and mode, and with a DJ clock waits for the bar line.

Generation size: a scene records the size it was saved at, but recalling it keeps the running
size (the images are encoded at that size) and says so in its caption. The running size is what
this machine can draw at the frame rate (auto measures it, stepping down lowers it); building
another would stall a core for seconds mid-set, and a larger one would make the frames late.

Model: a scene may name the flow it is drawn with (a bundled model or a checkpoint, such as one
`flowvj tune` made of the DJ's images). Recalling it loads that model and re-encodes the image set
on screen in the background, as an image-set switch does; the old model draws until then. Saving
a scene records the model only when it is not the show's default (what a show on this machine
draws without --model): a file of scenes saved with the default stays portable between a CPU
(hires) and a GPU (lite) machine, and each keeps its own. So a scene without a model leaves the
running model as it is, like every other field.

Audience: `audience = true` lets the phones of `flowvj serve --audience` vote for the scene, and
the show may recall it when the room clearly wants it (show/live/controls.py says when); a scene
without the key is the VJ's alone. It is a permission, not a look: recalling a scene leaves it
alone, and saving a scene from the page keeps the flag the file gave that name (a new scene is
not allowed until the VJ writes the key).

The file is read with tomllib and written by the small writer here (no dependency): saving a
scene appends its table to the file, or replaces that scene's table in place, so the comments and
layout of a hand-written file stay; the result is read back before it replaces the file
(atomically) and if it does not read back as meant, the whole file is rewritten from the scenes.
"""

import dataclasses
import json
import math
import os
import re
from pathlib import Path

import tomllib

from ..atomic import atomic_path
from ..errors import UserError
from .catalog import CONTROLS, INTERPOLATIONS, MODES

DEMO = "demo"                          # `images = "demo"`: the bundled demo images
NUMBERS = ("temperature", "speed", "sensitivity", "brightness")   # ranges from the catalog


@dataclasses.dataclass(frozen=True)
class Scene:
    """One scene; None is "leave it as it is". images: a tuple of absolute Paths, or DEMO."""
    name: str
    images: object = None
    mode: str = None
    interpolation: str = None
    temperature: float = None
    speed: float = None
    sensitivity: float = None
    brightness: float = None
    detail: float = None        # the compositor's detail amount (0..2)
    gen_size: tuple = None
    model: object = None        # a bundled model's name (str), or a checkpoint's absolute Path
    audience: bool = None       # True: the audience may choose it; None (unsaid) and False: not


FIELDS = tuple(field.name for field in dataclasses.fields(Scene))[1:]


def load_scenes(path):
    """name -> Scene, in file order; {} when the file does not exist yet (a save makes it).
    A file that is not TOML, or a scene with a bad field, is a UserError naming the file and the
    line (TOML) or the scene and field."""
    path = Path(path)
    if not path.exists():
        return {}
    try:
        text = path.read_text(encoding="utf-8")
        tables = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise UserError(f"{path}: {error}; expected TOML with one [name] table per scene") from None
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: cannot read the scenes ({getattr(error, 'strerror', None) or error})") from None
    return {name: _scene(path, name, fields) for name, fields in tables.items()}


def _scene(path, name, fields):
    """One table -> a Scene; image paths are taken relative to the file's folder."""
    where = f"{path}: scene {name!r}"
    if not isinstance(fields, dict):
        raise UserError(f"{where}: expected a table of fields ([{_key(name)}] then {', '.join(FIELDS)})")
    unknown = [key for key in fields if key not in FIELDS]
    if unknown:
        raise UserError(f"{where}: unknown field {unknown[0]!r}; expected {', '.join(FIELDS)}")
    values = {}
    for key, value in fields.items():
        values[key] = _checked(where, key, value, path.resolve().parent)
    return Scene(name, **values)


def _checked(where, key, value, folder):
    """One field's value, typed; a UserError "FILE: scene 'x': speed 9 is out of 0..4"."""
    shown = json.dumps(value) if isinstance(value, str) else value
    if key == "images":
        if value == DEMO:
            return DEMO
        if not (isinstance(value, list) and value and all(isinstance(v, str) and v for v in value)):
            raise UserError(f"{where}: images {shown} is not a list of folders or image files "
                            f"(expected e.g. [\"photos/calm\"], or \"{DEMO}\" for the bundled images)")
        return tuple((folder / v).resolve() for v in value)
    if key in ("mode", "interpolation"):
        choices = MODES if key == "mode" else INTERPOLATIONS
        if value not in choices:
            raise UserError(f"{where}: {key} {shown} is not one of {', '.join(choices)}")
        return value
    if key == "model":
        return _model(where, value, shown, folder)
    if key == "audience":
        if not isinstance(value, bool):
            raise UserError(f"{where}: audience {shown} is not true or false "
                            "(expected audience = true to let the audience choose this scene)")
        return value
    if key == "gen_size":
        match = re.fullmatch(r"(\d+)x(\d+)", value) if isinstance(value, str) else None
        if not match or int(match[1]) % 2 or int(match[2]) % 2 or not int(match[1]) or not int(match[2]):
            raise UserError(f"{where}: gen_size {shown} is not an even WIDTHxHEIGHT (expected e.g. \"128x72\")")
        return int(match[1]), int(match[2])
    control = CONTROLS[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UserError(f"{where}: {key} {shown} is not a number (expected {control.low:g}..{control.high:g})")
    if not control.low <= value <= control.high:
        raise UserError(f"{where}: {key} {value:g} is out of {control.low:g}..{control.high:g}")
    return float(value)


def _model(where, value, shown, folder):
    """A scene's model: a bundled name as it is, a checkpoint path made absolute (relative to the
    file's folder). A name that is neither (a typo of "hires") is refused here, before the show."""
    from ..flow.checkpoint import BUNDLED_MODELS

    if isinstance(value, str) and value in BUNDLED_MODELS:
        return value
    if not (isinstance(value, str) and value.strip() and ("/" in value or "." in value)):
        raise UserError(f"{where}: model {shown} is neither a bundled model ({', '.join(BUNDLED_MODELS)}) "
                        "nor a checkpoint's path (expected e.g. \"tuned.pt\" or \"./models/mine\")")
    return (folder / value).resolve()


def scene_now(name, image_specs, mode, interpolation, temperature, speed, sensitivity, brightness,
              gen_size, model=None, audience=None, detail=None):
    """The show's state as a Scene to save: image_specs are the running image set's paths (None:
    the bundled demo images); model: the one it draws with, None for the default (see the module's
    docstring); audience: the flag of the scene it replaces (None: unsaid); detail: the
    compositor's amount (None: a show without one); values outside a field's range (a speed of
    6 from OSC) are clipped to it, so the saved file always loads."""
    images = DEMO if image_specs is None else tuple(Path(spec).resolve() for spec in image_specs)
    values = {"temperature": temperature, "speed": speed, "sensitivity": sensitivity,
              "brightness": brightness, "detail": detail}
    for key, value in values.items():
        if value is not None:
            values[key] = min(max(float(value), CONTROLS[key].low), CONTROLS[key].high)
    if model is not None:
        model = _model(f"scene {name!r}", str(model), json.dumps(str(model)), Path.cwd())
    return Scene(str(name), images=images, mode=mode, interpolation=interpolation,
                 gen_size=tuple(gen_size) if gen_size else None, model=model, audience=audience, **values)


def image_set_name(image_sets, scene):
    """The name, in the show's `image_sets` (name -> specs, None for the demo images), of the
    set holding the scene's images: an existing set with the same files, else a new entry named
    after the scene (added to image_sets). None when the scene names no images."""
    if scene.images is None:
        return None
    wanted = None if scene.images == DEMO else scene.images
    for name, specs in image_sets.items():
        if (specs is None and wanted is None) or (
                specs is not None and wanted is not None
                and tuple(Path(spec).resolve() for spec in specs) == wanted):
            return name
    name = scene.name
    while name in image_sets:
        name += "'"
    image_sets[name] = None if wanted is None else list(wanted)
    return name


# -- writing ---------------------------------------------------------------------------------------

HEADER = ("# flowvj scenes: one [name] table per scene, recalled by name (the page, OSC /flowvj/scene)\n"
          "# or by the keys 1-9 (the first nine, in this order). Fields: " + ", ".join(FIELDS) + ".\n")


def _string(text):
    """A TOML basic string (JSON's escapes are TOML's, bar DEL, which TOML wants escaped)."""
    return json.dumps(str(text), ensure_ascii=False).replace("\x7f", "\\u007f")


def _key(name):
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else _string(name)


def scene_toml(scene, folder):
    """One scene as a TOML table; image paths relative to `folder` (the file's) where they can be."""
    lines = [f"[{_key(scene.name)}]"]
    for key in FIELDS:
        value = getattr(scene, key)
        if value is None:
            continue
        if key == "images" and value != DEMO:
            value = "[" + ", ".join(_string(_relative(p, folder)) for p in value) + "]"
        elif key == "model" and not isinstance(value, str):
            text = _relative(value, folder)
            value = _string(text if "/" in text or "." in text else "./" + text)
        elif key == "gen_size":
            value = _string(f"{value[0]}x{value[1]}")
        elif key == "audience":
            value = "true" if value else "false"
        elif isinstance(value, str):
            value = _string(value)
        else:
            value = repr(float(value))
        lines.append(f"{key} = {value}")
    return "\n".join(lines) + "\n"


def _relative(path, folder):
    try:
        return Path(os.path.relpath(path, folder)).as_posix()
    except ValueError:   # another drive (Windows): keep it absolute
        return Path(path).as_posix()


def save_scene(path, scene, *more):
    """Add `scene` (and `more`) to the scenes file at `path` (or replace the scenes of those
    names), atomically; a new file if there is none. A scene whose `audience` is unsaid keeps the
    flag the file gives that name. Returns the scenes as the file now holds them."""
    path = Path(path)
    scenes = load_scenes(path)   # a file broken since the start is refused, never overwritten
    text = path.read_text(encoding="utf-8") if path.exists() else HEADER
    folder = path.resolve().parent
    for each in (scene, *more):
        if each.audience is None and each.name in scenes:
            each = dataclasses.replace(each, audience=scenes[each.name].audience)
        scenes[each.name] = each
        text = _edited(text, each, folder) if text is not None else None
    try:
        if text is None or _parsed(text, path) != scenes:
            text = HEADER + "".join("\n" + scene_toml(s, folder) for s in scenes.values())
        with atomic_path(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
    except OSError as error:
        raise UserError(f"{path}: cannot save scene {scene.name!r} ({error.strerror or error})") from None
    return scenes


def save_scenes(path, scenes):
    """Save several scenes with one write: the live show's writer coalesces the saves that
    arrive while it writes (a page saving 20 scenes a second must not mean 20 rewrites)."""
    return save_scene(path, *scenes)


def _edited(text, scene, folder):
    """`text` with the scene's table replaced where it stands, or appended; None if its header
    cannot be told apart from the rest."""
    lines = text.splitlines(keepends=True)
    headers = []   # (line index, the table's name) of every table header line
    for i, line in enumerate(lines):
        if line.lstrip().startswith("[") and not line.lstrip().startswith("[["):
            try:
                headers.extend((i, name) for name in tomllib.loads(line.split("#")[0] + "\n"))
            except tomllib.TOMLDecodeError:
                continue
    table = scene_toml(scene, folder)
    starts = [i for i, name in headers if name == scene.name]
    if not starts:
        return text + ("" if text.endswith("\n") else "\n") + "\n" + table
    if len(starts) > 1:
        return None
    later = [i for i, _ in headers if i > starts[0]]
    end = later[0] if later else len(lines)
    body = lines[starts[0]:end]
    trailing = []   # blank lines and comments before the next table stay with it
    while body and (not body[-1].strip() or body[-1].lstrip().startswith("#")) and len(body) > 1:
        trailing.insert(0, body.pop())
    return "".join(lines[:starts[0]]) + table + "".join(trailing) + "".join(lines[end:])


def _parsed(text, path):
    try:
        tables = tomllib.loads(text)
        return {name: _scene(path, name, fields) for name, fields in tables.items()}
    except (tomllib.TOMLDecodeError, UserError):
        return None
