//! The living style page (`/console/style`): every component of the
//! console's design system (`templates/console.css`) on one page, in the
//! current language's frame and the browser's colour scheme, so a change
//! to the stylesheet can be judged at a glance and by the browser tests.
//! Debug builds only: a release answers 404.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::console::{Chrome, ConsoleUser};

#[derive(Template)]
#[template(path = "style.html")]
struct StylePage {
    c: Chrome,
}

pub(crate) async fn style_page(ctx: ConsoleUser) -> Response {
    if !cfg!(debug_assertions) {
        return StatusCode::NOT_FOUND.into_response();
    }
    let page = StylePage {
        c: ctx.chrome(ctx.t().t("design.style_title")),
    };
    ctx.render(StatusCode::OK, &page)
}
