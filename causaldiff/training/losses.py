"""Pure loss functions: ``diffae_loss(model, batch, ...) -> dict`` of named terms (and ``loss``, their sum)."""

from __future__ import annotations

import torch
from torch import Tensor

from causaldiff.diffusion.schedule import add_noise


def gaussian_kl(mu_q: Tensor, logvar_q: Tensor, mu_p: Tensor | float = 0.0, var_p: float = 1.0) -> Tensor:
    """KL(N(mu_q, exp(logvar_q)) || N(mu_p, var_p)) summed over the last dim, elementwise otherwise."""
    var_q = logvar_q.exp()
    return 0.5 * ((var_q + (mu_q - mu_p) ** 2) / var_p - 1 - logvar_q + torch.log(torch.tensor(var_p))).sum(-1)


def p2_weights(alphas_cumprod: Tensor, gamma: float, k: float = 1.0) -> Tensor:
    """(T,) P2 weights ``(k + SNR_t)^-gamma`` with ``SNR_t = a_t / (1 - a_t)``, scaled to mean 1."""
    w = (k + alphas_cumprod / (1 - alphas_cumprod)) ** -gamma
    return w / w.mean()


def min_snr_weights(alphas_cumprod: Tensor, gamma: float, prediction: str = "eps") -> Tensor:
    """(T,) Min-SNR-gamma weights (Hang et al., ICCV 2023, eq. 9): the x0-MSE weighted by ``min(SNR_t, gamma)``,
    written on the eps-MSE as ``min(SNR_t, gamma) / SNR_t`` and on the v-MSE as ``min(SNR_t, gamma) / (SNR_t + 1)``."""
    snr = alphas_cumprod / (1 - alphas_cumprod)
    return snr.clamp(max=gamma) / (snr + 1 if prediction == "v" else snr)


def diffae_loss(model, batch: dict, kl_weight: float = 1.0, beta_z: float = 1.0, beta_u: float = 0.01,
                beta_s: float = 0.01, beta_read: float = 1.0, p_uncond: float = 0.1,
                p2_gamma: float = 0.0, p2_k: float = 1.0, latent_noise: float = 1.0,
                snr_gamma: float = 0.0, focus_weight: float = 0.0) -> dict[str, Tensor]:
    """CausalDiffAE objective on a batch ``{"x": (B, C, H, W), "labels": {node: (B,)}, "mask": {node: (B,)}}``.

    eps-prediction MSE (Ho et al., 2020, eq. 14) + kl_weight * (beta_z KL(q(z_i|x) || p(z_i|y_i)) over observed
    labels + beta_u KL(q(u|x) || N(0, I)) + beta_s KL(q(s|x) || N(0, I))) + beta_read * read-out loss.
    q(z_i|x) is taken mean-field: N(f_i(mean of z_pa) + mu_u_i, var_u_i).

    ``p2_gamma > 0`` weights each sample's eps-MSE by ``(p2_k + SNR_t)^-gamma`` (P2 weighting, Choi et al., CVPR 2022,
    eq. 8), normalised to mean 1 over the timesteps: less weight on the nearly clean steps, whose imperceptible detail
    the decoder can read off x_t, more on the noisy steps, where it must take content from the condition.

    ``snr_gamma > 0`` weights it by ``min(SNR_t, gamma) / SNR_t`` instead (Min-SNR-gamma, Hang et al., 2023): the
    nearly clean steps stop dominating the gradient, and the noisy steps, where layout is decided, converge sooner.

    A ``v``-prediction model (``model.prediction``) is trained on the v-MSE, ``|eps error|^2 / a_t``: the noisy
    steps, whose x̂0 the eps-MSE barely constrains (an eps error of 0.03 is an x̂0 error of 1.9 at t = 900), weigh as
    much as their image error.

    ``focus_weight > 0`` weighs each pixel's error by ``1 + focus_weight * focus`` where the batch carries a focus mask
    ``batch["focus"]`` (B, 1, H, W) (the pixels a small finding changes; :class:`CausalDataModule` ``focus``): a
    lesion of ~18 pixels of 1,024 otherwise barely enters the mean loss, and a decoder so trained draws one from fresh
    noise in only about half the samples whose latents ask for one (CHANGELOG.md, brain32 v5).

    ``latent_noise`` scales the posterior noise in the latents the decoder and read-out see: 1 is the reparameterised
    sample; 0 the posterior mean (deterministic, as DiffAE's semantic encoder), which lets small offsets of z carry
    detail (e.g. where a lesion is) that noise of the prior's scale (0.5) would drown.
    """
    x, labels, mask = batch["x"], batch["labels"], batch["mask"]
    b = x.shape[0]
    mu_u, lv_u, mu_s, lv_s = model.encode(x)
    u = mu_u + latent_noise * (0.5 * lv_u).exp() * torch.randn_like(mu_u)
    s = mu_s + latent_noise * (0.5 * lv_s).exp() * torch.randn_like(mu_s)
    z = model.mechanisms(u)

    z_mean = model.mechanisms(mu_u)
    prior = model.alignment.prior_mean(labels)
    kl_nodes = gaussian_kl(z_mean, lv_u, prior, model.alignment.prior_std**2)  # (B, n)
    m = torch.stack([mask[n].float() for n in model.graph.order], dim=1)
    kl_z = (kl_nodes * m).sum() / b
    kl_u = gaussian_kl(mu_u, lv_u).sum() / b
    kl_s = gaussian_kl(mu_s, lv_s).sum() / b
    read = model.alignment.readout_loss(z, labels, mask)

    t = torch.randint(0, model.alphas_cumprod.shape[0], (b,), device=x.device)
    a = model.alphas_cumprod[t].view(b, 1, 1, 1)
    noise = torch.randn_like(x)
    x_t = add_noise(x, noise, a)
    cond = model.condition(z, s)
    drop = torch.rand(b, device=x.device) < p_uncond
    cond = torch.where(drop[:, None], model.null_condition(b).to(cond.dtype), cond)
    err = (model.eps(x_t, t, cond).float() - noise.float()).pow(2)
    if focus_weight and "focus" in batch:
        err = err * (1 + focus_weight * batch["focus"].float())
    per_sample = err.flatten(1).mean(1)
    if model.prediction == "v":  # eps error = sqrt(a_t) (v error), so this is the v-MSE of Salimans & Ho (2022)
        per_sample = per_sample / model.alphas_cumprod[t]
    if snr_gamma:
        per_sample = per_sample * min_snr_weights(model.alphas_cumprod, snr_gamma, model.prediction)[t]
    elif p2_gamma:
        per_sample = per_sample * p2_weights(model.alphas_cumprod, p2_gamma, p2_k)[t]
    mse = per_sample.mean()

    loss = mse + kl_weight * (beta_z * kl_z + beta_u * kl_u + beta_s * kl_s) + beta_read * read
    return {"loss": loss, "mse": mse.detach(), "kl_z": kl_z.detach(), "kl_u": kl_u.detach(), "kl_s": kl_s.detach(),
            "readout": read.detach()}
