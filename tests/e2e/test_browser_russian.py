"""The manager's main path in Russian, in a real browser whose language is Russian (context locale
ru-RU: `Accept-Language: ru-RU`): log in, create a campaign, import recipients, preview, start, watch the
progress — Russian words and Russian plural forms on every step, and each page holding at 390 px.

MAILADMIN_SCREENSHOTS=docs/screenshots saves the README's screenshots of these pages on the way.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from mailadmin.settings import PROJECT_ROOT
from tests.factories import MANAGER_EMAIL, PASSWORD, create_campaign

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}
CSV = (
    "email,name,city\n"
    "anna@example.com,Анна Иванова,Москва\n"
    "boris@example.org,Борис Петров,Казань\n"
    "ANNA@example.com,Анна ещё раз,Москва\n"  # a duplicate (case folded)
    "vera@example,Вера Смирнова,Самара\n"  # invalid: no dot in the domain (row 5)
    "gleb@example.net,Глеб Орлов,Пермь\n"
)


@pytest.fixture
def one_per_batch(app_env):
    """The worker reports after every message: the page counts up on its way to 100 %."""
    app_env["MAILER_SEND_BATCH_SIZE"] = "1"


@pytest.fixture
def russian_browser(browser):
    """new_page(viewport) -> a page of one Russian-speaking browser context (its cookies shared)."""
    context = browser.new_context(locale="ru-RU", viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    yield context
    context.close()


class Shots:
    """Screenshots for the README when MAILADMIN_SCREENSHOTS names a folder (relative to the project)."""

    def __init__(self) -> None:
        folder = os.environ.get("MAILADMIN_SCREENSHOTS")
        self.folder = (PROJECT_ROOT / folder) if folder else None
        if self.folder:
            self.folder.mkdir(parents=True, exist_ok=True)

    def take(self, page, name: str) -> None:
        if self.folder:
            page.screenshot(path=str(Path(self.folder) / f"{name}.png"), full_page=True)


def no_horizontal_scroll(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def log_in(page, server_url: str, shots: Shots) -> None:
    page.goto(f"{server_url}/login")
    assert page.locator("html").get_attribute("lang") == "ru"
    expect(page.locator("h1")).to_have_text("Войти")
    shots.take(page, "ru-login")
    page.get_by_label("Email").fill(MANAGER_EMAIL)
    page.get_by_label("Пароль").fill(PASSWORD)
    page.get_by_role("button", name="Войти").click()
    page.wait_for_url(re.compile(r"/campaigns$|/$"))


def create_and_import(page) -> str:
    expect(page.locator("h1")).to_have_text("Рассылки")
    expect(page.locator("tr", has_text="Старые новости")).to_contain_text("5 получателей")
    page.get_by_role("link", name="Новая рассылка").click()
    page.get_by_label("Название рассылки").fill("Осенние новости")
    page.get_by_label("Тема").fill("Новости для {{ name }}")
    page.get_by_label("Текстовая версия").fill("Здравствуйте, {{ name }} из города {{ city }}!")
    page.get_by_role("button", name="Создать черновик").click()
    page.wait_for_url(re.compile(r"/recipients/import$"))
    assert page.locator(".flash").first.inner_text() == "Черновик «Осенние новости» сохранён. Дальше: импортируйте получателей."

    page.get_by_label("CSV-файл").set_input_files({"name": "recipients.csv", "mimeType": "text/csv", "buffer": CSV.encode()})
    page.get_by_role("button", name="Импортировать").click()
    summary = page.locator("#import-summary")
    summary.wait_for()
    assert summary.inner_text() == "добавлено: 3 · 1 дубликат · некорректных: 1 · в стоп-листе: 0"
    assert page.locator("details summary").inner_text() == "1 некорректная строка не импортирована"
    assert page.locator("p", has_text="В рассылке").first.inner_text().startswith("В рассылке 3 получателя")
    return page.url


def preview(page) -> str:
    page.get_by_role("link", name="3. Предпросмотр").click()
    expect(page.locator("h1")).to_have_text("Предпросмотр")
    expect(page.locator("#preview-subject")).to_have_text("Новости для Анна Иванова")
    assert "Показано для получателя anna@example.com" in page.locator("main").inner_text()
    return page.url


def start(page) -> tuple[str, str]:
    page.get_by_role("link", name="5. Запуск").click()
    start_url = page.url
    expect(page.locator("h1")).to_have_text("Запуск рассылки")
    assert page.locator("#start-count strong").inner_text() == "3"
    assert page.locator("#start-estimate").inner_text().startswith("Меньше минуты на эту рассылку.")
    assert "Квота отправки — 100 писем за скользящий час" in page.locator("#start-quota").inner_text()
    page.get_by_role("button", name="Начать отправку").click()
    page.wait_for_url(re.compile(r"/campaigns/\d+$"))
    assert page.locator(".flash.success").inner_text() == "Рассылка запущена: в очереди 3 получателя."
    return start_url, page.url


def progress(page) -> None:
    expect(page.locator("#campaign-progress")).to_have_attribute("aria-valuenow", "100", timeout=60_000)
    expect(page.locator(".page-head .status")).to_have_text("Завершена", timeout=30_000)
    assert page.locator('[data-bind="counts.sent"]').inner_text() == "3"
    assert page.locator('[data-bind="count_labels.sent"]').inner_text() == "Отправлено"
    line = page.locator(".progress-line").inner_text()
    assert "готово 100%" in line and "отправлено: 3" in line and "всего получателей: 3" in line
    assert page.locator("#recipients-title").inner_text() == "Получатели"
    # Dates in Russian, in the browser's zone (static/localtime.js rewrote them with the same month names).
    dates = page.locator('[data-live-html="dates"]').inner_text()
    assert re.search(r"Запущена\s+\d{1,2} (янв|февр|мар|апр|мая|июн|июл|авг|сент|окт|нояб|дек)\.? \d{4}, \d\d:\d\d UTC", dates), dates


@pytest.mark.usefixtures("one_per_batch")
def test_a_russian_manager_walks_the_main_path_in_russian_and_the_phone_layout_holds(
    app, manager, smtp, live_server, russian_browser, engine_processes
):
    draft = create_campaign(manager, 5, name="Старые новости")  # the list's "many" form: 5 получателей
    shots = Shots()
    page = russian_browser.new_page()
    log_in(page, live_server.url, shots)
    shots.take(page, "ru-campaigns")
    import_url = create_and_import(page)
    shots.take(page, "ru-import")
    preview_url = preview(page)
    shots.take(page, "ru-preview")
    engine_processes.worker()
    start_url, campaign_url = start(page)
    progress(page)
    shots.take(page, "ru-campaign")
    assert smtp.wait_for(3, timeout=10)
    assert sorted(m.subject for m in smtp.messages) == [
        "Новости для Анна Иванова", "Новости для Борис Петров", "Новости для Глеб Орлов"]

    phone = russian_browser.new_page()
    phone.set_viewport_size(PHONE)
    for url in (f"{live_server.url}/campaigns", f"{live_server.url}/campaigns/new", import_url, preview_url,
                start_url.replace("/start", "/test-email"), f"{live_server.url}/campaigns/{draft.id}/start",
                f"{live_server.url}/campaigns/{draft.id}", campaign_url, f"{live_server.url}/account/password"):
        phone.goto(url)
        assert phone.locator("html").get_attribute("lang") == "ru"
        assert no_horizontal_scroll(phone), f"{url} scrolls sideways at 390 px"
    phone.goto(campaign_url)
    shots.take(phone, "ru-campaign-phone")
