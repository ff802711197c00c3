"""The diffusion model families Atelier knows (Qt-free, torch-free): the engine loads them, the
hub fetches their config folders, the Studio names them."""

FAMILIES = {
    "sd15": "Stable Diffusion 1.x",
    "sd15-inpainting": "Stable Diffusion 1.x inpainting",
    "sd2": "Stable Diffusion 2.x",
    "sdxl": "Stable Diffusion XL",
    "sdxl-inpainting": "Stable Diffusion XL inpainting",
    "sd3": "Stable Diffusion 3/3.5",
    "flux-schnell": "FLUX.1 schnell",
    "flux-dev": "FLUX.1 dev",
}
FLOW_FAMILIES = ("sd3", "flux-schnell", "flux-dev")
