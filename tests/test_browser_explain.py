"""Explain page in a real headless Chromium: upload one of the assets images, choose two methods, see both maps."""

from __future__ import annotations

import pytest

from ui_helpers import ROOT, server_with_trained_run

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def trained_server(tmp_path_factory):
    """A live dashboard whose store holds one finished convnet run on mnist5k (trained by a real worker)."""
    from engine.config import RunConfig

    config = RunConfig(train_limit=1500, epochs=2, layer_stats_every=0)
    with server_with_trained_run(tmp_path_factory.mktemp("explain_browser_home"), config, "digits") as url:
        yield url


def test_upload_an_asset_and_see_two_attribution_maps(trained_server, browser):
    from playwright.sync_api import expect

    expect.set_options(timeout=60_000)  # the first visit imports torch and Captum in the server
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    try:
        page.set_default_timeout(60_000)
        page.goto(f"{trained_server}/explain")
        expect(page.get_by_text("Image file")).to_be_visible()
        page.locator("input[type=file]").set_input_files(str(ROOT / "assets" / "digit_7.png"))
        # the input as the model sees it, then the two default methods side by side
        expect(page.get_by_text("as the model sees it")).to_be_visible()
        methods = page.get_by_test_id("stMultiSelect").filter(has_text="Methods")
        expect(methods).to_contain_text("Saliency")
        expect(methods).to_contain_text("Integrated Gradients")
        for title in ("Saliency", "Integrated Gradients"):
            expect(page.locator("strong", has_text=title).first).to_be_visible()
        # every method renders its heatmap and overlay as images, plus the input image: at least 5
        page.wait_for_function("document.querySelectorAll('[data-testid=stImage] img').length >= 5")
        images = page.locator("[data-testid=stImage] img")
        assert images.count() >= 5
        # the predicted class of the drawn 7 is shown among the top-k
        expect(page.get_by_text("Explain the class")).to_be_visible()
        (ROOT / "test-artifacts").mkdir(exist_ok=True)
        page.screenshot(path=str(ROOT / "test-artifacts" / "explain.png"), full_page=True)
    finally:
        page.close()


def test_your_own_model_from_a_safetensors_upload_shows_its_maps(trained_server, browser, tmp_path):
    """The critical path of "Your own model": weights uploaded as safetensors, an image, labelled maps."""
    import torch
    import torchvision
    from playwright.sync_api import expect
    from safetensors.torch import save_file

    torch.manual_seed(0)
    weights = tmp_path / "mine.safetensors"
    save_file(torchvision.models.squeezenet1_1(num_classes=3).state_dict(), str(weights))
    expect.set_options(timeout=60_000)
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    try:
        page.set_default_timeout(60_000)
        page.goto(f"{trained_server}/explain")
        page.get_by_text("Your own model").click()
        arch = page.get_by_test_id("stSelectbox").filter(has_text="Architecture")
        arch.click()
        page.keyboard.type("squeezenet1_1")
        page.keyboard.press("Enter")
        size = page.get_by_label("Input size (pixels, square)")
        size.fill("64")
        size.press("Enter")
        page.wait_for_timeout(1000)  # the rerun for the new size, before the upload
        expect(page.get_by_text("Upload the weights")).to_be_visible()
        page.locator("input[type=file]").first.set_input_files(str(weights))
        expect(page.get_by_text("squeezenet1_1 with your weights · 3 classes")).to_be_visible()
        page.locator("input[type=file]").nth(1).set_input_files(str(ROOT / "assets" / "digit_7.png"))
        expect(page.get_by_text("The model says: class")).to_be_visible()
        expect(page.get_by_text("No familiarity check")).to_be_visible()
        # input, then heatmap + overlay + colour key for Saliency and Integrated Gradients (in the background)
        page.wait_for_function("document.querySelectorAll('[data-testid=stImage] img').length >= 7")
        expect(page.get_by_text("pushes the score of the explained class").first).to_be_visible()
    finally:
        page.close()
