//! Message content as Markdown, built as DOM nodes (never as an HTML string):
//! raw HTML in a message shows as text, images are not loaded, and links open
//! in the system browser through the shell (only http, https and mailto).

use confab_wire::ipc::{OpenLink, OpenLinkArgs};
use pulldown_cmark::{CodeBlockKind, Event, HeadingLevel, Options, Parser, Tag};
use yew::prelude::*;
use yew::virtual_dom::VTag;

use crate::ipc;

/// Frames of elements being built; the first is the root.
struct Frame {
    tag: VTag,
}

fn element(name: &'static str) -> VTag {
    VTag::new(name)
}

fn safe_link(url: &str) -> Option<String> {
    let lower = url.trim().to_ascii_lowercase();
    (lower.starts_with("https://") || lower.starts_with("http://") || lower.starts_with("mailto:"))
        .then(|| url.trim().to_owned())
}

/// A link element; clicks are handled by [`on_link_click`] on the container.
fn link(url: &str) -> VTag {
    match safe_link(url) {
        Some(target) => {
            let mut a = element("a");
            a.add_attribute("href", "#");
            a.add_attribute("title", target.clone());
            a.add_attribute("data-href", target);
            a.add_attribute("class", "link");
            a
        }
        // Anything else (javascript:, data:, file:) is shown, not followed.
        None => {
            let mut span = element("span");
            span.add_attribute("class", "link-inert");
            span.add_attribute("title", url.to_owned());
            span
        }
    }
}

/// Put on an element holding rendered Markdown: a click on one of its links
/// opens the link in the system browser, never in the webview.
pub fn on_link_click() -> Callback<MouseEvent> {
    Callback::from(|e: MouseEvent| {
        use wasm_bindgen::JsCast;
        let Some(target) = e
            .target()
            .and_then(|t| t.dyn_into::<web_sys::Element>().ok())
        else {
            return;
        };
        let Ok(Some(anchor)) = target.closest("a[data-href]") else {
            return;
        };
        e.prevent_default();
        let Some(url) = anchor
            .get_attribute("data-href")
            .and_then(|u| safe_link(&u))
        else {
            return;
        };
        wasm_bindgen_futures::spawn_local(async move {
            if let Err(err) = ipc::invoke::<OpenLink>(&OpenLinkArgs { url }).await {
                web_sys::console::warn_1(&err.message.into());
            }
        });
    })
}

/// Elements nested deeper than this are not made: their content joins the
/// deepest one. A hostile message of thousands of nested quotes or lists
/// renders as text in a few levels instead of a DOM the webview chokes on.
const MAX_DEPTH: usize = 16;

pub fn render(source: &str) -> Html {
    let mut options = Options::empty();
    options.insert(Options::ENABLE_STRIKETHROUGH);
    options.insert(Options::ENABLE_TABLES);
    options.insert(Options::ENABLE_TASKLISTS);
    let mut stack = vec![Frame {
        tag: element("div"),
    }];
    stack[0].tag.add_attribute("class", "markdown");
    let push_child = |stack: &mut Vec<Frame>, node: Html| {
        if let Some(top) = stack.last_mut() {
            top.tag.add_child(node);
        }
    };
    // Starts past MAX_DEPTH not made; their ends come first (last in, first out).
    let mut flattened = 0usize;
    for event in Parser::new_ext(source, options) {
        match event {
            Event::Start(_) if stack.len() >= MAX_DEPTH => flattened += 1,
            Event::End(_) if flattened > 0 => flattened -= 1,
            Event::Start(tag) => {
                let vtag = match tag {
                    Tag::Paragraph => element("p"),
                    Tag::Heading { level, .. } => element(match level {
                        HeadingLevel::H1 => "h3",
                        HeadingLevel::H2 => "h4",
                        _ => "h5",
                    }),
                    Tag::BlockQuote(_) => element("blockquote"),
                    Tag::CodeBlock(kind) => {
                        let mut pre = element("pre");
                        if let CodeBlockKind::Fenced(lang) = kind
                            && !lang.is_empty()
                        {
                            pre.add_attribute("data-lang", lang.to_string());
                        }
                        pre
                    }
                    Tag::List(Some(_)) => element("ol"),
                    Tag::List(None) => element("ul"),
                    Tag::Item => element("li"),
                    Tag::Emphasis => element("em"),
                    Tag::Strong => element("strong"),
                    Tag::Strikethrough => element("del"),
                    Tag::Link { dest_url, .. } => link(&dest_url),
                    // Images are not fetched: the alt text shows, marked.
                    Tag::Image { .. } => {
                        let mut span = element("span");
                        span.add_attribute("class", "image-alt");
                        span
                    }
                    Tag::Table(_) => element("table"),
                    Tag::TableHead => element("thead"),
                    Tag::TableRow => element("tr"),
                    Tag::TableCell => element("td"),
                    // HTML blocks, footnotes, metadata: their text shows as text.
                    _ => element("span"),
                };
                stack.push(Frame { tag: vtag });
            }
            Event::End(_) if stack.len() > 1 => {
                if let Some(frame) = stack.pop() {
                    push_child(&mut stack, Html::from(frame.tag));
                }
            }
            Event::Text(text) => push_child(&mut stack, html! { { text.to_string() } }),
            Event::Code(code) => {
                push_child(&mut stack, html! { <code>{ code.to_string() }</code> })
            }
            // Raw HTML is content like any other: shown, never interpreted.
            Event::Html(raw) | Event::InlineHtml(raw) => {
                push_child(&mut stack, html! { { raw.to_string() } })
            }
            Event::SoftBreak => push_child(&mut stack, html! { { "\n" } }),
            Event::HardBreak => push_child(&mut stack, html! { <br /> }),
            Event::Rule => push_child(&mut stack, html! { <hr /> }),
            Event::TaskListMarker(done) => push_child(
                &mut stack,
                html! { <span class="task" aria-hidden="true">{ if done { "☑ " } else { "☐ " } }</span> },
            ),
            _ => {}
        }
    }
    while stack.len() > 1 {
        if let Some(frame) = stack.pop() {
            push_child(&mut stack, Html::from(frame.tag));
        }
    }
    stack.pop().map(|f| Html::from(f.tag)).unwrap_or_default()
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use yew::virtual_dom::VNode;

    /// The elements the renderer may make, and the attributes they may carry.
    const TAGS: &[&str] = &[
        "div",
        "p",
        "h3",
        "h4",
        "h5",
        "blockquote",
        "pre",
        "ol",
        "ul",
        "li",
        "em",
        "strong",
        "del",
        "a",
        "span",
        "table",
        "thead",
        "tr",
        "td",
        "code",
        "br",
        "hr",
    ];
    const ATTRIBUTES: &[&str] = &[
        "class",
        "href",
        "title",
        "data-href",
        "data-lang",
        "aria-hidden",
    ];

    /// Every element of `node`: allowed, with allowed attributes, links that
    /// go nowhere by themselves; answers the deepest nesting.
    fn check(node: &VNode, depth: usize) -> Result<usize, String> {
        match node {
            VNode::VTag(tag) => {
                if !TAGS.contains(&tag.tag()) {
                    return Err(format!("element <{}>", tag.tag()));
                }
                for (name, value) in tag.attributes.iter() {
                    if !ATTRIBUTES.contains(&name) {
                        return Err(format!("attribute {name}"));
                    }
                    if name == "href" && value != "#" {
                        return Err(format!("href {value}"));
                    }
                    if name == "data-href" && safe_link(value).is_none() {
                        return Err(format!("data-href {value}"));
                    }
                }
                match tag.children() {
                    Some(children) => check(children, depth + 1),
                    None => Ok(depth),
                }
            }
            VNode::VList(list) => list
                .iter()
                .map(|child| check(child, depth))
                .try_fold(depth, |max, d| d.map(|d| max.max(d))),
            VNode::VText(_) => Ok(depth),
            other => Err(format!("a node of another kind: {other:?}")),
        }
    }

    /// Markdown-ish text: the characters that make structure, and words.
    fn markdownish() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("> ".to_owned()),
            Just("- ".to_owned()),
            Just("1. ".to_owned()),
            Just("\n".to_owned()),
            Just("\n\n".to_owned()),
            Just("**".to_owned()),
            Just("_".to_owned()),
            Just("`".to_owned()),
            Just("```".to_owned()),
            Just("| a | b |\n|---|---|\n".to_owned()),
            Just("[x](".to_owned()),
            Just("javascript:alert(1)".to_owned()),
            Just("https://example.com".to_owned()),
            Just(")".to_owned()),
            Just("![i](https://x/y.png)".to_owned()),
            Just("<script>alert(1)</script>".to_owned()),
            Just("<img src=x onerror=alert(1)>".to_owned()),
            Just("<a href=\"javascript:x\">".to_owned()),
            "[a-z ]{0,8}",
            any::<char>().prop_map(String::from),
        ];
        proptest::collection::vec(piece, 0..200).prop_map(|v| v.concat())
    }

    proptest! {
        // A fixed number of cases: CI runs the same amount of work each time.
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn rendering_never_leaves_the_allow_list(source in markdownish()) {
            let depth = check(&render(&source), 0).map_err(TestCaseError::fail)?;
            prop_assert!(depth <= MAX_DEPTH + 4, "nested {depth} deep");
        }
    }

    #[test]
    fn hostile_nesting_is_flattened() {
        let deep = format!("{}x\n\n{}y", "> ".repeat(5_000), "- ".repeat(5_000));
        let depth = check(&render(&deep), 0).unwrap_or(usize::MAX);
        assert!(depth <= MAX_DEPTH + 2, "{depth}");
    }

    #[test]
    fn only_web_and_mail_links_are_followed() {
        for ok in ["https://example.com", "HTTP://x.y", "mailto:a@b.c"] {
            assert!(safe_link(ok).is_some(), "{ok}");
        }
        for bad in [
            "javascript:alert(1)",
            " JavaScript:alert(1)",
            "data:text/html,x",
            "file:///etc/passwd",
            "#",
            "",
        ] {
            assert_eq!(safe_link(bad), None, "{bad}");
        }
    }
}
