#!/usr/bin/env python3
"""Captioned colour and grey images from three Debian packages, offline (Documentation/data.md):

  emoji    fonts-noto-color-emoji (NotoColorEmoji.ttf, colour bitmaps 136x128) + unicode-data
           (emoji-test.txt: every fully-qualified emoji with its CLDR name, group and subgroup)
           -> OUT/emoji/images/NNNNN.png (32x32 RGB on white), OUT/emoji/{train,val}.jsonl
  fashion  dataset-fashion-mnist (60,000 + 10,000 grey 28x28, 10 classes)
           -> OUT/fashion/images/{train,test}-NNNNN.png (28x28 grey), OUT/fashion/{train,val}.jsonl

Each JSONL line is a pair `ugen tokenize --pairs` reads: {"image": "images/....png", "caption": "..."} plus
fields the tokenizer ignores (emoji: code points, name, group, subgroup; fashion: label, class). The emoji
held-out split is by emoji: every skin-tone variant of one emoji goes to the same split, so no held-out
emoji was seen in another skin tone. Fashion's held-out split is its own test set.

Deterministic: the same packages give the same files, byte for byte. Every count is checked here, and
the script exits non-zero (writing no JSONL) if one emoji of the test file does not map to exactly one
colour glyph, or if Fashion-MNIST does not hold 70,000 labelled images.

  python3 cluster/data/images.py --out data/images
  python3 cluster/data/images.py --check data/images     # re-counts what is on disk
  python3 cluster/data/images.py --self-test             # parsing on a made-up excerpt, no package needed
"""
import argparse, gzip, hashlib, json, os, struct, sys

EMOJI_FONT = "/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf"
EMOJI_TEST = "/usr/share/unicode/emoji/emoji-test.txt"
FASHION = "/usr/share/datasets/fashion-mnist"
SIZE = 32
SKIN_TONES = set(range(0x1F3FB, 0x1F400))
VAL_PERCENT = 10

# Fashion-MNIST classes in label order, with article, and a plural-free noun for "a photo of ..." wording.
FASHION_CLASSES = [("a", "t-shirt"), ("a pair of", "trousers"), ("a", "pullover"), ("a", "dress"), ("a", "coat"),
                   ("a", "sandal"), ("a", "shirt"), ("a", "sneaker"), ("a", "bag"), ("an", "ankle boot")]
FASHION_TEMPLATES = ["{a} {c}", "a photo of {a} {c}", "{a} {c} on a black background", "a grey picture of {a} {c}",
                     "{c}", "a small image of {a} {c}", "this is {a} {c}", "a product photo: {c}",
                     "{a} {c}, in greyscale", "a picture of {a} {c}", "{c}, seen from the front", "an image of {a} {c}"]
EMOJI_TEMPLATES = ["{n}", "{n}", "an emoji of {n}", "{n} emoji", "{n}, {s}", "a picture of {n}",
                   "{n} ({g})", "an icon: {n}", "{g}: {n}", "the {n} emoji"]


def fail(message):
    print("error: " + message, file=sys.stderr)
    sys.exit(1)


def need(path, package):
    if not os.path.exists(path):
        fail(f"{path} not found: install the Debian package {package} (make data-images does, as root)")


def pick(key, n):
    """A deterministic choice in 0..<n from a string (so wording and splits do not depend on order)."""
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "little") % n


def parse_emoji_test(path):
    """[(code points, name, group, subgroup)] for every fully-qualified line, in file order."""
    out, group, subgroup = [], None, None
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("# group:"):
                group = line.split(":", 1)[1].strip()
            elif line.startswith("# subgroup:"):
                subgroup = line.split(":", 1)[1].strip()
            elif not line.startswith("#") and "; fully-qualified" in line:
                codes = [int(c, 16) for c in line.split(";")[0].split()]
                # "# 😀 E1.0 grinning face": the name follows the version field.
                name = line.split("#", 1)[1].strip().split(" ", 2)[2]
                out.append((codes, name, group, subgroup))
    return out


def emoji_key(codes):
    """Skin-tone variants share a key: the code points without tone modifiers and variation selectors."""
    return "-".join("%X" % c for c in codes if c not in SKIN_TONES and c != 0xFE0F)


def render_emoji(font, text):
    """The emoji as a 32x32 RGB image on white, or None when the font has no single colour glyph for it."""
    from PIL import Image, ImageDraw
    left, top, right, bottom = font.getbbox(text)
    if right - left != 136 or bottom - top != 128:   # not one glyph: the sequence did not map
        return None
    canvas = Image.new("RGBA", (136, 136), (255, 255, 255, 0))
    ImageDraw.Draw(canvas).text((0, 4), text, font=font, embedded_color=True)
    if canvas.getbbox() is None:
        return None
    white = Image.new("RGBA", canvas.size, (255, 255, 255, 255))
    rgb = Image.alpha_composite(white, canvas).convert("RGB")
    return rgb.resize((SIZE, SIZE), Image.Resampling.LANCZOS)


def emoji(out):
    need(EMOJI_FONT, "fonts-noto-color-emoji")
    need(EMOJI_TEST, "unicode-data")
    from PIL import ImageFont, features
    if not features.check("raqm"):
        fail("Pillow cannot shape text (no libraqm/libfribidi): emoji sequences (flags, families, skin tones) would not "
             "map to one glyph; apt-get install libfribidi0, or a Pillow built with raqm")
    font = ImageFont.truetype(EMOJI_FONT, size=109, layout_engine=ImageFont.Layout.RAQM)
    entries = parse_emoji_test(EMOJI_TEST)
    os.makedirs(os.path.join(out, "images"), exist_ok=True)
    lines = {"train": [], "val": []}
    unmapped = []
    for i, (codes, name, group, subgroup) in enumerate(entries):
        text = "".join(chr(c) for c in codes)
        image = render_emoji(font, text)
        if image is None:
            unmapped.append(f"{' '.join('%04X' % c for c in codes)} {name}")
            continue
        rel = "images/%05d.png" % i
        image.save(os.path.join(out, rel), optimize=False)
        key = emoji_key(codes)
        split = "val" if pick("split " + key, 100) < VAL_PERCENT else "train"
        template = EMOJI_TEMPLATES[pick("caption " + " ".join(map(str, codes)), len(EMOJI_TEMPLATES))]
        caption = template.format(n=name, g=group.lower(), s=subgroup.replace("-", " "))
        lines[split].append({"image": rel, "caption": caption, "emoji": text, "name": name, "group": group,
                             "subgroup": subgroup, "key": key})
    if unmapped:
        fail(f"{len(unmapped)} of {len(entries)} fully-qualified emoji in {EMOJI_TEST} have no single glyph in "
             f"{EMOJI_FONT}, e.g. {unmapped[0]}")
    write_jsonl(out, lines)
    return len(entries), {s: len(v) for s, v in lines.items()}


# Colourful, flat and told apart by their names' colour words: hearts, fruit, vegetables, circles and squares,
# smiling faces, sea animals, flowers (142 emoji).
DEMO_SUBGROUPS = {"heart", "food-fruit", "food-vegetable", "geometric", "face-smiling", "face-affection", "animal-marine",
                  "plant-flower"}


def demo_pairs(emoji_dir, path):
    """The demo's small captioned set: the emoji of DEMO_SUBGROUPS, from both splits — the demo shows what a
    minute of training can draw, it measures nothing — each twice: captioned by its plain name ("red apple")
    and by its templated caption. Image paths are relative to the file's folder, pointing into emoji_dir."""
    lines = []
    for split in ("train", "val"):
        with open(os.path.join(emoji_dir, split + ".jsonl"), encoding="utf-8") as f:
            for line in f:
                o = json.loads(line)
                if o["subgroup"] in DEMO_SUBGROUPS:
                    image = os.path.relpath(os.path.join(emoji_dir, o["image"]), os.path.dirname(os.path.abspath(path)))
                    lines.append({"image": image, "caption": o["name"], "name": o["name"]})
                    if o["caption"] != o["name"]:
                        lines.append({"image": image, "caption": o["caption"], "name": o["name"]})
    if not lines:
        fail(f"{emoji_dir}: no emoji of the demo's subgroups; run images.py --only emoji first")
    tmp = path + ".partial"
    with open(tmp, "w", encoding="utf-8") as f:
        for o in lines:
            f.write(json.dumps(o, ensure_ascii=False, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return len(lines)


def read_idx(path, magic):
    with gzip.open(path, "rb") as f:
        data = f.read()
    (m,) = struct.unpack(">i", data[:4])
    if m != magic:
        fail(f"{path}: magic number {m}, expected {magic}")
    if magic == 2051:
        n, rows, cols = struct.unpack(">iii", data[4:16])
        if (rows, cols) != (28, 28) or len(data) != 16 + n * 784:
            fail(f"{path}: expected 28x28 images")
        return [data[16 + i * 784: 16 + (i + 1) * 784] for i in range(n)]
    (n,) = struct.unpack(">i", data[4:8])
    return list(data[8: 8 + n])


def fashion(out):
    from PIL import Image
    os.makedirs(os.path.join(out, "images"), exist_ok=True)
    lines = {"train": [], "val": []}
    for part, split in [("train", "train"), ("t10k", "val")]:
        images_path = os.path.join(FASHION, f"{part}-images-idx3-ubyte.gz")
        need(images_path, "dataset-fashion-mnist")
        images = read_idx(images_path, 2051)
        labels = read_idx(os.path.join(FASHION, f"{part}-labels-idx1-ubyte.gz"), 2049)
        if len(images) != len(labels) or any(l > 9 for l in labels):
            fail(f"{FASHION}/{part}: {len(images)} images but {len(labels)} labels (0-9)")
        name = "train" if part == "train" else "test"
        for i, (pixels, label) in enumerate(zip(images, labels)):
            rel = "images/%s-%05d.png" % (name, i)
            Image.frombytes("L", (28, 28), pixels).save(os.path.join(out, rel), optimize=False)
            article, noun = FASHION_CLASSES[label]
            template = FASHION_TEMPLATES[pick(f"{name} {i}", len(FASHION_TEMPLATES))]
            lines[split].append({"image": rel, "caption": template.format(a=article, c=noun), "label": label,
                                 "class": noun})
    total = sum(len(v) for v in lines.values())
    if total != 70000:
        fail(f"{FASHION}: {total} images, expected 70,000 (60,000 + 10,000)")
    write_jsonl(out, lines)
    return total, {s: len(v) for s, v in lines.items()}


def write_jsonl(out, lines):
    """train.jsonl and val.jsonl, each under a temporary name then renamed: they only exist complete."""
    for split, objects in lines.items():
        path = os.path.join(out, split + ".jsonl")
        with open(path + ".part", "w", encoding="utf-8") as f:
            for o in objects:
                f.write(json.dumps(o, ensure_ascii=False, sort_keys=True) + "\n")
        os.replace(path + ".part", path)


def check(out):
    """Re-counts the JSONL files and PNGs on disk against the packages."""
    from PIL import Image
    expected_emoji = len(parse_emoji_test(EMOJI_TEST))
    counts = {}
    for name, expected, size, mode in [("emoji", expected_emoji, (SIZE, SIZE), "RGB"),
                                       ("fashion", 70000, (28, 28), "L")]:
        seen, keys = 0, {}
        for split in ["train", "val"]:
            path = os.path.join(out, name, split + ".jsonl")
            if not os.path.exists(path):
                fail(f"{path} missing: run make data-images")
            with open(path, encoding="utf-8") as f:
                for n, line in enumerate(f, 1):
                    o = json.loads(line)
                    seen += 1
                    if "key" in o:
                        keys.setdefault(o["key"], set()).add(split)
                    if n == 1 or n % 997 == 0:  # spot-check images
                        with Image.open(os.path.join(out, name, o["image"])) as im:
                            if im.size != size or im.mode != mode:
                                fail(f"{path}:{n}: {o['image']} is {im.size} {im.mode}, expected {size} {mode}")
        if seen != expected:
            fail(f"{out}/{name}: {seen} pairs, expected {expected}")
        if any(len(s) > 1 for s in keys.values()):
            fail(f"{out}/{name}: an emoji has variants in both splits")
        counts[name] = seen
    print(f"check: {counts['emoji']} emoji (every fully-qualified emoji of {EMOJI_TEST}), "
          f"{counts['fashion']} Fashion-MNIST images: ok")


def self_test():
    """The parsing, grouping, splitting and captioning on a made-up excerpt: needs no package, no Pillow."""
    import tempfile
    excerpt = """# group: Smileys & Emotion
# subgroup: face-smiling
1F600                                                  ; fully-qualified     # 😀 E1.0 grinning face
263A FE0F                                              ; fully-qualified     # ☺️ E0.6 smiling face
263A                                                   ; unqualified         # ☺ E0.6 smiling face
# group: People & Body
# subgroup: hand-fingers-open
1F44B                                                  ; fully-qualified     # 👋 E0.6 waving hand
1F44B 1F3FD                                            ; fully-qualified     # 👋🏽 E1.0 waving hand: medium skin tone
# subgroup: person-role
1F477 200D 2640 FE0F                                   ; fully-qualified     # 👷‍♀️ E4.0 woman construction worker
1F477 200D 2640                                        ; minimally-qualified # 👷‍♀ E4.0 woman construction worker
"""
    with tempfile.NamedTemporaryFile("w", suffix=".txt", encoding="utf-8", delete=False) as f:
        f.write(excerpt)
    entries = parse_emoji_test(f.name)
    os.remove(f.name)
    assert [e[1] for e in entries] == ["grinning face", "smiling face", "waving hand", "waving hand: medium skin tone",
                                       "woman construction worker"], entries
    assert entries[0][2:] == ("Smileys & Emotion", "face-smiling") and entries[4][2:] == ("People & Body", "person-role")
    assert emoji_key([0x1F44B]) == emoji_key([0x1F44B, 0x1F3FD]) == "1F44B", "skin tones share a key"
    assert emoji_key([0x263A, 0xFE0F]) == "263A"
    share = sum(pick("split " + str(i), 100) < VAL_PERCENT for i in range(10000)) / 10000
    assert 0.08 < share < 0.12, share
    assert pick("x", 7) == pick("x", 7)
    captions = {t.format(a="an", c="ankle boot") for t in FASHION_TEMPLATES}
    assert len(captions) == len(FASHION_TEMPLATES) and all("ankle boot" in c for c in captions)
    assert all("{n}" in t for t in EMOJI_TEMPLATES)
    # IDX: 2 images of 28x28 and their labels, gzip-compressed as the package ships them.
    with tempfile.TemporaryDirectory() as d:
        images, labels = os.path.join(d, "i.gz"), os.path.join(d, "l.gz")
        with gzip.open(images, "wb") as g:
            g.write(struct.pack(">iiii", 2051, 2, 28, 28) + bytes(range(256)) * 6 + bytes(2 * 784 - 1536))
        with gzip.open(labels, "wb") as g:
            g.write(struct.pack(">ii", 2049, 2) + bytes([9, 0]))
        got = read_idx(images, 2051)
        assert len(got) == 2 and got[0][:3] == bytes([0, 1, 2]) and len(got[1]) == 784
        assert read_idx(labels, 2049) == [9, 0]
    print("self-test: ok")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="data/images")
    p.add_argument("--check", metavar="DIR", help="count what an earlier run wrote to DIR, write nothing")
    p.add_argument("--only", choices=["emoji", "fashion"], help="extract one of the two (the demo needs only emoji)")
    p.add_argument("--demo-pairs", metavar="FILE", help="from OUT/emoji, write the demo's pairs file (demo_pairs) and exit")
    p.add_argument("--self-test", action="store_true", help="test the parsing on a made-up excerpt (no package needed)")
    a = p.parse_args()
    if a.self_test:
        self_test()
        return
    if a.check:
        check(a.check)
        return
    if a.demo_pairs:
        n = demo_pairs(os.path.join(a.out, "emoji"), a.demo_pairs)
        print(f"demo: {n} pairs in {a.demo_pairs}")
        return
    if a.only != "fashion":
        n, splits = emoji(os.path.join(a.out, "emoji"))
        print(f"emoji: {n} fully-qualified emoji, all mapped; train {splits['train']}, held out {splits['val']}")
    if a.only != "emoji":
        n, splits = fashion(os.path.join(a.out, "fashion"))
        print(f"fashion: {n} images; train {splits['train']}, held out {splits['val']}")


if __name__ == "__main__":
    main()
