"""Text explanation in a real headless Chromium: type a sentence, see its tokens coloured; markup stays text; the
explained class follows each typed sentence's prediction."""

from __future__ import annotations

import pytest

from ui_helpers import server_with_trained_run

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def text_server(tmp_path_factory):
    """A live dashboard whose store holds one finished bag-of-words run on `sentiment` (trained by a real worker):
    it learns the words' polarity within seconds, so sentences of either class are predicted as such."""
    from engine.config import RunConfig

    config = RunConfig(dataset="sentiment", model="bow", train_limit=1500, epochs=2, batch_size=32,
                       layer_stats_every=0)
    with server_with_trained_run(tmp_path_factory.mktemp("text_browser_home"), config, "reviews") as url:
        yield url


def test_type_a_sentence_and_see_coloured_tokens(text_server, browser):
    from playwright.sync_api import expect

    expect.set_options(timeout=60_000)  # the first visit imports torch and Captum in the server
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    try:
        page.set_default_timeout(60_000)
        page.goto(f"{text_server}/explain")
        box = page.locator("textarea")
        expect(box).to_be_visible()
        box.fill("the plot was <script>alert('x')</script> never dull")
        box.press("Control+Enter")
        tokens = page.locator(".tl-tokens").first.locator(".tl-token")
        expect(tokens.filter(has_text="never")).to_have_count(1)
        expect(tokens.filter(has_text="script")).to_have_count(2)  # "<script>" and "</script>", split, as text
        expect(tokens.filter(has_text="<").first).to_be_visible()
        colours = tokens.evaluate_all("spans => spans.map(s => getComputedStyle(s).backgroundColor)")
        assert len(set(colours)) > 3, colours  # shaded token by token, not one colour
        assert page.locator(".tl-tokens script").count() == 0 and not dialogs
    finally:
        page.close()


SENTENCES = ["the acting was wonderful", "a dull film", "the movie was great", "the plot was boring and bad",
             "a wonderful film"]


def test_the_explained_class_follows_each_typed_sentence(text_server, browser):
    from playwright.sync_api import expect

    expect.set_options(timeout=60_000)
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    try:
        page.set_default_timeout(60_000)
        page.goto(f"{text_server}/explain")
        box = page.locator("textarea")
        said = page.locator("h4", has_text="The model says:")
        chosen = page.get_by_role("combobox", name="Explain the class")
        predictions = []
        for sentence in SENTENCES:
            box.fill(sentence)
            box.press("Control+Enter")
            expect(page.locator(".tl-tokens").first).to_contain_text(sentence.split()[-1])
            expect(page.locator('[data-testid="stStatusWidget"]')).to_have_count(0)  # the run has finished
            predicted = said.inner_text().removeprefix("The model says: ").split(" (")[0].strip()
            predictions.append(predicted)
            expect(chosen).to_have_value(f"{predicted} (predicted)")  # the class box follows the prediction
            whys = page.get_by_text(f"why {predicted}", exact=False)
            expect(whys).to_have_count(2)  # each map (Integrated Gradients, Occlusion) names the class it explains
        assert len(set(predictions)) == 2, predictions  # both classes were predicted: a class carried over would show
    finally:
        page.close()
