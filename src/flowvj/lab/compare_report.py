"""The compare report's page: summary.json's figures as tables beside the images they measure.

Plain HTML with no scripts or external files (the flicker plots are inline SVG), so the folder
can be opened from disk or served as it is. Every table says what its figures mean, because
the reader is deciding whether the show looks right, not reading code.
"""

from html import escape

SET_TITLES = {"user": "Your images (out of distribution for CIFAR-10 models)",
              "cifar10_test": "CIFAR-10 test images (in distribution)"}
METHOD_TITLES = {"flow_lerp": "flow latent lerp", "flow_slerp": "flow latent slerp",
                 "vae_lerp": "VAE latent lerp", "crossfade": "pixel cross-fade",
                 "real_images": "the real images (reference)"}
COLOURS = {"flow_slerp": "#c0392b", "vae_lerp": "#2980b9", "crossfade": "#555"}
STYLE = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
         "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;"
         "text-align:right}th:first-child,td:first-child{text-align:left}img{image-rendering:pixelated;"
         "max-width:100%}figure{margin:1em 0}svg{border:1px solid #ccc;background:#fff}")

JUDGES_TEXT = (
    "<p>Interpolation judges, none of them the flow: the VAE's negative ELBO of each in-between "
    "frame (it favours smooth images like its own decodes, so it flatters the VAE's row; it runs at "
    "{vae_size} only), and two model-free statistics of natural images relative to the two real "
    "endpoint images blended by position: fine-detail energy (mean squared Laplacian) and the "
    "kurtosis of luminance gradients (photos have sparse, heavy-tailed gradients; a double exposure "
    "is closer to Gaussian). 1.0 is as sharp / as sparse as the real images. At the other sizes the "
    "endpoints are your images aspect-filled to that size, so the ratios ask the same question "
    "there: are the in-betweens as detailed as the pictures they travel between?</p>")
FLICKER_TEXT = (
    "<p>Flicker: a slow path of {steps} steps between two images (a {seconds:.1f} s crossing at 30 fps), and "
    "the mean absolute change from each frame to the next, in 8-bit levels. <b>mean step</b> is the "
    "typical change per frame; <b>max / mean</b> is the largest step over the typical one: 1.0 is a "
    "perfectly steady pace (a cross-fade changes every pixel by the same amount each step, so its "
    "figure is 1 to within rounding), 2 means one frame changes twice as much as a typical one, and a "
    "large figure is a visible jump. <b>length / cross-fade</b> is the whole path's change over the "
    "cross-fade's: in these terms the cross-fade is the shortest path between the two pictures, so 1.0 is the "
    "least any path can change, and a figure above 1 is the texture the flow moves through on its "
    "way (what makes its in-betweens look alive instead of doubled). The VAE's path runs between its "
    "blurred reconstructions, not your images, so it can come out shorter than 1. Mean step and "
    "length are averaged over the pairs; max / mean is the worst pair's.</p>")


def _fmt(value, digits=3):
    return "-" if value is None else f"{value:.{digits}f}"


def _table(head, rows):
    cells = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{cells}</tr>{body}</table>"


def _recon_table(sets):
    rows = []
    for name, s in sets.items():
        for size, e in s["sizes"].items():
            r, bpd = e["reconstruction"], e["bits_per_dim"] or {}
            rows.append([escape(SET_TITLES.get(name, name)), size, r["images"], _fmt(r["flow_mean_abs_levels"], 6),
                         _fmt(r["flow_psnr_db"], 1), f"{r['flow_max_abs_error']:.2e}",
                         _fmt(r["vae_mean_abs_levels"], 2), _fmt(r["vae_psnr_db"], 2),
                         _fmt(bpd.get("flow_bits_per_dim")), _fmt(bpd.get("vae_negative_elbo_bits_per_dim"))])
    return _table(["images", "size", "n", "flow mean abs (levels)", "flow PSNR dB", "flow max abs",
                   "VAE mean abs (levels)", "VAE PSNR dB", "flow bits/dim", "VAE neg. ELBO bits/dim"], rows)


def _judge_table(judged):
    rows = [[escape(METHOD_TITLES.get(m, m)), _fmt(j["vae_bits_per_dim"]), _fmt(j["hf_energy_ratio"]),
             _fmt(j["gradient_kurtosis"], 2), _fmt(j["gradient_kurtosis_ratio"])] for m, j in judged.items()]
    return _table(["in-between frames", "VAE neg. ELBO bits/dim (lower = more CIFAR-like)",
                   "detail energy / endpoints' (1 = as sharp)", "gradient kurtosis",
                   "kurtosis / endpoints' (1 = as sparse)"], rows)


def _flicker_table(flicker):
    rows = [[escape(METHOD_TITLES.get(m, m)), _fmt(f["mean_step_levels"], 2), _fmt(f["max_step_levels"], 2),
             _fmt(f["max_over_mean"], 2), _fmt(f["length_over_crossfade"], 2)]
            for m, f in flicker["summary"].items()]
    return _table(["slow path", "mean step (levels)", "largest step (levels)", "max / mean (1 = steady)",
                   "length / cross-fade (1 = shortest)"], rows)


def _overview_table(user):
    """One row per size and method: the figures that say how the show's in-betweens look and move."""
    rows = []
    for size, e in user["sizes"].items():
        flicker = e["flicker"]["summary"]
        for m, j in e["interpolation_judges"].items():
            if m == "real_images":
                continue
            f = flicker.get(m, {})
            rows.append([size, escape(METHOD_TITLES.get(m, m)), _fmt(j["hf_energy_ratio"], 2),
                         _fmt(j["gradient_kurtosis_ratio"], 2), _fmt(j["vae_bits_per_dim"], 2),
                         _fmt(f.get("mean_step_levels"), 2), _fmt(f.get("max_over_mean"), 2),
                         _fmt(f.get("length_over_crossfade"), 2)])
    return _table(["size", "in-betweens", "detail / endpoints'", "kurtosis / endpoints'", "VAE bits/dim",
                   "flicker: mean step (levels)", "max / mean", "length / cross-fade"], rows)


def _flicker_plot(pair, width=640, height=110, pad=4):
    """Inline SVG: each method's step sizes along the slow path, on one shared scale."""
    methods = pair["methods"]
    top = max(max(f["steps_levels"]) for f in methods.values()) or 1.0
    lines = []
    for m, f in methods.items():
        steps = f["steps_levels"]
        dx = (width - 2 * pad) / max(len(steps) - 1, 1)
        points = " ".join(f"{pad + i * dx:.1f},{height - pad - (height - 2 * pad) * s / top:.1f}"
                          for i, s in enumerate(steps))
        lines.append(f"<polyline fill='none' stroke='{COLOURS.get(m, '#000')}' stroke-width='1.5' "
                     f"points='{points}'><title>{escape(METHOD_TITLES.get(m, m))}</title></polyline>")
    legend = ", ".join(f"<span style='color:{COLOURS.get(m, '#000')}'>{escape(METHOD_TITLES.get(m, m))}</span>"
                       for m in methods)
    a, b = pair["pair"]
    return (f"<figure><svg width='{width}' height='{height}' viewBox='0 0 {width} {height}'>{''.join(lines)}"
            f"</svg><figcaption>image {a} &rarr; image {b}: change per frame along the slow path "
            f"(0 to {top:.2f} levels, bottom to top); {legend}</figcaption></figure>")


def _per_image(e, key, shown=16):
    return ", ".join(f"{v:.1f}" for v in e["reconstruction_per_image"][key][:shown])


def _size_section(name, size, e):
    parts = [f"<h3>{size}</h3>"]
    if e["reconstruction_png"]:
        parts.append(f"<figure><img src='{e['reconstruction_png']}' alt='reconstructions'><figcaption>rows: "
                     "original, flow reconstruction, VAE reconstruction; VAE PSNR per image, left to right: "
                     f"{_per_image(e, 'vae_psnr_db')} dB</figcaption></figure>")
    else:
        parts.append(f"<p>At {size} the flow's round trip is {_fmt(e['reconstruction']['flow_psnr_db'], 1)} dB "
                     "PSNR (the strips' first and last frames are those reconstructions); the VAE cannot run "
                     "at this size, so these in-betweens are the flow's against the cross-fade.</p>")
    parts.append(f"<h4>Interpolation judges ({e['frames'] - 2} in-between frames per pair, "
                 f"{e['pairs']} pairs, strips of the first {len(e['strips'])})</h4>")
    parts.append(_judge_table(e["interpolation_judges"]))
    parts.append(f"<h4>Flicker ({e['flicker']['steps']} steps, {len(e['flicker']['pairs'])} pairs)</h4>")
    parts.append(_flicker_table(e["flicker"]))
    parts.extend(_flicker_plot(pair) for pair in e["flicker"]["pairs"])
    if e.get("detail"):
        parts.append(_detail_section(size, e["detail"]))
    for strip in e["strips"]:
        a, b = strip["pair"]
        rows = ", ".join(METHOD_TITLES[m] for m in strip["rows"])
        parts.append(f"<figure><img src='{strip['png']}' alt='interpolation {a} to {b} at {size}'><figcaption>"
                     f"image {a} &rarr; image {b} at {size}; rows: {rows}</figcaption></figure>")
    return parts


def _detail_section(size, d):
    """The in-betweens composed to the output size: bilinear beside the show's detail method."""
    width, height = d["output_size"]
    a, b = d["pair"]
    rows = [[escape(name), ", ".join(_fmt(v, 1) for v in f["endpoint_psnr_db"]), _fmt(f["hf_energy_ratio"], 2),
             _fmt(f["gradient_kurtosis_ratio"], 2)] for name, f in d["figures"].items()]
    ts = ", ".join(f"{t:g}" for t in d["t"])
    return (f"<h4>At {width}x{height}: the compositor ({escape(d['method'])}) beside bilinear (off)</h4>"
            "<p>The flow draws at " + size + "; the compositor makes each frame the output's size, the detail "
            "from your originals where the frame shows them. Endpoint PSNR is against the original aspect-"
            "filled at the output size; detail and kurtosis are the in-betweens' over the originals' blend "
            "(1 = as sharp as your photos).</p>"
            + _table(["method", "endpoints (dB)", "detail / endpoints'", "kurtosis / endpoints'"], rows)
            + f"<figure><img src='{d['sheet']}' alt='{width}x{height} in-betweens {a} to {b}'><figcaption>"
              f"image {a} &rarr; image {b}, t = {ts}; a {CROP_TEXT} crop of each frame at its own pixels; rows: "
              f"off (bilinear), {escape(d['method'])}</figcaption></figure>")


CROP_TEXT = "480x270 centre"

TUNED_TEXT = (
    "<p>The tuned flow <code>{tuned}</code> beside the model it started from, <code>{bundled}</code>, on "
    "your images at the show's size. Both reproduce your images exactly (a flow is invertible), so "
    "tuning shows only in the in-betweens: the question is whether the tuned ones look more like "
    "your collection. Bits/dim is each model's exact cost of your images (lower = the images are "
    "more expected: what tuning optimises, so it flatters the tuned model here); detail and kurtosis "
    "are the in-betweens' over the endpoints' blend (1 = as sharp / as sparse as your images); "
    "flicker as above (the show's slerp path).</p>")


def _tuned_section(t):
    """Bundled vs tuned: both models' figures in one table and their in-betweens on one sheet."""
    roles = t.get("roles")

    def named(i):
        role = f", {roles[i]}" if roles else ""
        return f"{i} <code>{escape(t['images'][i])}</code>{role}"

    parts = ["<h2>Bundled vs tuned</h2>",
             TUNED_TEXT.format(tuned=escape(t["tuned"]), bundled=escape(t["bundled"]))]
    for size, e in t["sizes"].items():
        rows = []
        for role, m in e["models"].items():
            j, f = m["judges"], m["flicker"]
            label = f"{role} ({escape(t[role])})"
            rows.append([label, _fmt(m["bits_per_dim"]), _fmt(j["hf_energy_ratio"], 2),
                         _fmt(j["gradient_kurtosis_ratio"], 2), _fmt(j["gradient_kurtosis"], 2),
                         _fmt(f["mean_step_levels"], 2), _fmt(f["max_over_mean"], 2),
                         _fmt(f["length_over_crossfade"], 2)])
        rows.append(["your images (reference)", "-", "1.00", "1.00", _fmt(e["real_gradient_kurtosis"], 2),
                     "-", "-", "-"])
        pairs = "; ".join(f"{named(a)} &rarr; {named(b)}" for a, b in e["pairs"])
        ts = ", ".join(f"{x:g}" for x in e["sheet_t"])
        parts += [f"<h3>{size}</h3>",
                  _table(["model", "bits/dim on your images", "detail / endpoints'", "kurtosis / endpoints'",
                          "gradient kurtosis", "flicker: mean step (levels)", "max / mean",
                          "length / cross-fade"], rows),
                  f"<figure><img src='{e['sheet']}' alt='bundled and tuned in-betweens at {size}'>"
                  "<figcaption>"
                  f"two rows per pair, bundled above tuned; t = {ts} (the ends are your images, the same "
                  f"for both); pairs: {pairs}</figcaption></figure>"]
    return "\n".join(parts)


def page(summary):
    flow, vae = summary["flow"], summary["vae"]
    vae_size = f"{vae['config']['image_size']}x{vae['config']['image_size']}"
    any_entry = next(iter(next(iter(summary["sets"].values()))["sizes"].values()))
    steps = any_entry["flicker"]["steps"]
    parts = [f"<!doctype html><meta charset='utf-8'><title>flowvj: flow vs VAE vs cross-fade</title>"
             f"<style>{STYLE}</style><h1>Flow vs VAE vs pixel cross-fade</h1>",
             f"<p>Flow <code>{escape(flow['checkpoint'])}</code>: test {_fmt(flow['test_bits_per_dim'])} "
             f"bits/dim (exact NLL). VAE <code>{escape(vae['checkpoint'])}</code>: test negative ELBO "
             f"{_fmt(vae['test_negative_elbo_bits_per_dim'])} bits/dim (an upper bound on its NLL). "
             "Both trained on CIFAR-10 train; every figure is in <a href='summary.json'>summary.json</a>.</p>",
             f"<p>Sizes: {', '.join(summary['sizes'])}. Both models were trained on {vae_size} images, but the "
             "flow is fully convolutional, so the show encodes your images at its generation size (aspect-"
             "filled) and travels between them there. The VAE is not: its encoder ends and its decoder "
             f"starts with a fully connected layer sized for {vae_size}, so it appears at {vae_size} only, "
             "and at the other sizes the report is flow against pixel cross-fade. CIFAR-10 test images are "
             f"compared at their own {vae_size}.</p>",
             "<h2>Reconstruction</h2><p>Flow: x &rarr; z &rarr; x. VAE: decode(posterior mean). "
             "Errors in 8-bit levels on the clipped output; PSNR averaged per image (200 dB = exact).</p>",
             _recon_table(summary["sets"]),
             JUDGES_TEXT.format(vae_size=vae_size), FLICKER_TEXT.format(steps=steps, seconds=steps / 30)]
    if "user" in summary["sets"]:
        parts += ["<h2>Your images at each size: detail and flicker</h2>", _overview_table(summary["sets"]["user"])]
    if summary.get("bundled_vs_tuned"):
        parts.append(_tuned_section(summary["bundled_vs_tuned"]))
    for name, s in summary["sets"].items():
        parts.append(f"<h2>{escape(SET_TITLES.get(name, name))}</h2>")
        for size, e in s["sizes"].items():
            parts.extend(_size_section(name, size, e))
    return "\n".join(parts) + "\n"


def write_html(path, summary):
    path.write_text(page(summary))
