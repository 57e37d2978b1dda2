"""The compare report's page: summary.json's figures as tables beside the images they measure.

Plain HTML with no scripts or external files, so the folder can be opened from disk or served
as it is.
"""

from html import escape

SET_TITLES = {"user": "Your images (out of distribution for CIFAR-10 models)",
              "cifar10_test": "CIFAR-10 test images (in distribution)"}
METHOD_TITLES = {"flow_lerp": "flow latent lerp", "flow_slerp": "flow latent slerp",
                 "vae_lerp": "VAE latent lerp", "crossfade": "pixel cross-fade",
                 "real_images": "the real images (reference)"}
STYLE = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
         "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;"
         "text-align:right}th:first-child,td:first-child{text-align:left}img{image-rendering:pixelated;"
         "max-width:100%}figure{margin:1em 0}")


def _fmt(value, digits=3):
    return "-" if value is None else f"{value:.{digits}f}"


def _table(head, rows):
    cells = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{cells}</tr>{body}</table>"


def _recon_table(sets):
    rows = []
    for name, s in sets.items():
        r = s["reconstruction"]
        rows.append([escape(SET_TITLES.get(name, name)), r["images"], _fmt(r["flow_mean_abs_levels"], 6),
                     _fmt(r["flow_psnr_db"], 1), f"{r['flow_max_abs_error']:.2e}",
                     _fmt(r["vae_mean_abs_levels"], 2), _fmt(r["vae_psnr_db"], 2),
                     _fmt(s["bits_per_dim"]["flow_bits_per_dim"]),
                     _fmt(s["bits_per_dim"]["vae_negative_elbo_bits_per_dim"])])
    return _table(["images", "n", "flow mean abs (levels)", "flow PSNR dB", "flow max abs",
                   "VAE mean abs (levels)", "VAE PSNR dB", "flow bits/dim", "VAE neg. ELBO bits/dim"], rows)


def _judge_table(judged):
    rows = [[escape(METHOD_TITLES.get(m, m)), _fmt(j["vae_bits_per_dim"]), _fmt(j["hf_energy_ratio"]),
             _fmt(j["gradient_kurtosis"], 2), _fmt(j["gradient_kurtosis_ratio"])] for m, j in judged.items()]
    return _table(["in-between frames", "VAE neg. ELBO bits/dim (lower = more CIFAR-like)",
                   "detail energy / endpoints' (1 = as sharp)", "gradient kurtosis",
                   "kurtosis / endpoints' (1 = as sparse)"], rows)


def _per_image(s, key, shown=16):
    return ", ".join(f"{v:.1f}" for v in s["reconstruction_per_image"][key][:shown])


def page(summary):
    flow, vae = summary["flow"], summary["vae"]
    parts = [f"<!doctype html><meta charset='utf-8'><title>flowvj: flow vs VAE vs cross-fade</title>"
             f"<style>{STYLE}</style><h1>Flow vs VAE vs pixel cross-fade</h1>",
             f"<p>Flow <code>{escape(flow['checkpoint'])}</code>: test {_fmt(flow['test_bits_per_dim'])} "
             f"bits/dim (exact NLL). VAE <code>{escape(vae['checkpoint'])}</code>: test negative ELBO "
             f"{_fmt(vae['test_negative_elbo_bits_per_dim'])} bits/dim (an upper bound on its NLL). "
             "Both trained on CIFAR-10 train; every figure is in <a href='summary.json'>summary.json</a>.</p>",
             "<h2>Reconstruction</h2><p>Flow: x &rarr; z &rarr; x. VAE: decode(posterior mean). "
             "Errors in 8-bit levels on the clipped output; PSNR averaged per image (200 dB = exact).</p>",
             _recon_table(summary["sets"]),
             "<p>Interpolation judges, none of them the flow: the VAE's negative ELBO of each "
             "in-between frame (it favours smooth images like its own decodes, so it flatters the VAE's "
             "row), and two model-free statistics of natural images relative to the two real endpoint "
             "images blended by position: fine-detail energy (mean squared Laplacian) and the kurtosis of "
             "luminance gradients (photos have sparse, heavy-tailed gradients; a double exposure is "
             "closer to Gaussian). 1.0 is as sharp / as sparse as the real images.</p>"]
    for name, s in summary["sets"].items():
        title = escape(SET_TITLES.get(name, name))
        parts.append(f"<h2>{title}</h2><figure><img src='{s['reconstruction_png']}' alt='reconstructions'>"
                     "<figcaption>rows: original, flow reconstruction, VAE reconstruction; VAE PSNR per "
                     f"image, left to right: {_per_image(s, 'vae_psnr_db')} dB</figcaption></figure>")
        parts.append(f"<h3>Interpolation judges ({s['frames'] - 2} in-between frames per pair, "
                     f"{len(s['strips'])} pairs)</h3>")
        parts.append(_judge_table(s["interpolation_judges"]))
        for strip in s["strips"]:
            a, b = strip["pair"]
            parts.append(f"<figure><img src='{strip['png']}' alt='interpolation {a} to {b}'><figcaption>"
                         f"image {a} &rarr; image {b}; rows: flow lerp, flow slerp, VAE lerp, cross-fade"
                         "</figcaption></figure>")
    return "\n".join(parts) + "\n"


def write_html(path, summary):
    path.write_text(page(summary))
