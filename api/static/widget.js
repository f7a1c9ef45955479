/*
 * giftrec storefront widget.
 *
 *   <div data-giftrec-key="gr_..." data-customer="12345" data-count="8"></div>
 *   <script src="https://giftrec.example/widget.js" async></script>
 *
 * data-customer + data-customer-signature: personal picks for that logged-in customer. The signature is
 * computed by the shop's backend with the widget key's identity secret (docs/api.md): without a valid one,
 * or while the API does not know the customer yet, the widget shows bestsellers and counts views and
 * clicks anonymously. data-product: items similar to that SKU (the signed customer, if also given, is
 * cited in events); neither: bestsellers. Optional: data-title, data-category, data-min-price,
 * data-max-price. The key must be a widget key bound to this page's origin.
 * Shows a carousel of picks; sends a view event when it is seen and a click event (citing the item's
 * recommendation_id) when an item is clicked. On any error it renders nothing.
 */
(function () {
  "use strict";

  var script = document.currentScript;
  var API = script && script.src ? new URL(script.src, window.location.href).origin : window.location.origin;
  var STYLE_ID = "giftrec-style";
  var CSS = [
    ".giftrec{position:relative;font:14px/1.4 system-ui,-apple-system,'Segoe UI',sans-serif;color:#222;margin:16px 0}",
    ".giftrec-title{font-size:18px;font-weight:600;margin:0 0 8px}",
    ".giftrec-viewport{overflow-x:auto;scroll-snap-type:x mandatory;scroll-behavior:smooth;scrollbar-width:none}",
    ".giftrec-viewport::-webkit-scrollbar{display:none}",
    ".giftrec-track{display:flex;gap:12px;list-style:none;margin:0;padding:0}",
    ".giftrec-card{flex:0 0 180px;scroll-snap-align:start;border:1px solid #e4e0da;border-radius:8px;background:#fff;overflow:hidden}",
    ".giftrec-link{display:block;color:inherit;text-decoration:none;cursor:pointer}",
    ".giftrec-img{display:block;width:180px;height:180px;object-fit:cover;background:#f3efe9}",
    ".giftrec-ph{display:flex;align-items:center;justify-content:center;width:180px;height:180px;background:#efe7dc;color:#8a6d4b;font-size:48px;font-weight:600}",
    ".giftrec-name{display:block;padding:8px 10px 2px;height:40px;overflow:hidden}",
    ".giftrec-price{display:block;padding:0 10px 10px;font-weight:600}",
    ".giftrec-nav{position:absolute;top:50%;width:32px;height:32px;border-radius:50%;border:1px solid #ccc;background:#fff;cursor:pointer;font-size:18px;line-height:1}",
    ".giftrec-prev{left:-12px}.giftrec-next{right:-12px}"
  ].join("\n");

  function uuid() {
    if (window.crypto && window.crypto.randomUUID) return window.crypto.randomUUID();
    return "xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx".replace(/[xy]/g, function (c) {
      var r = (Math.random() * 16) | 0;
      return (c === "x" ? r : (r & 0x3) | 0x8).toString(16);
    });
  }

  function anonymousId() {
    try {
      var value = window.localStorage.getItem("giftrec_aid");
      if (!value) {
        value = uuid();
        window.localStorage.setItem("giftrec_aid", value);
      }
      return value;
    } catch (e) {
      return uuid();
    }
  }

  function safeUrl(value) {
    if (!value) return null;
    try {
      var url = new URL(value, window.location.href);
      return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
    } catch (e) {
      return null;
    }
  }

  function formatPrice(value, currency) {
    try {
      return new Intl.NumberFormat(document.documentElement.lang || undefined, {
        style: "currency",
        currency: currency || "GBP"
      }).format(value);
    } catch (e) {
      return (currency || "") + " " + Number(value).toFixed(2);
    }
  }

  function sendEvents(key, signature, events) {
    if (!events.length) return Promise.resolve();
    var headers = { "Content-Type": "application/json", "X-Api-Key": key };
    if (signature) headers["X-Customer-Signature"] = signature;
    return window
      .fetch(API + "/v1/events", {
        method: "POST",
        keepalive: true,
        credentials: "omit",
        headers: headers,
        body: JSON.stringify({ events: events })
      })
      .catch(function () {});
  }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  function render(container, items, opts) {
    if (!document.getElementById(STYLE_ID)) {
      var style = el("style");
      style.id = STYLE_ID;
      style.textContent = CSS;
      document.head.appendChild(style);
    }
    // Events name the customer only with the shop's signature of them; anonymously otherwise.
    var signature = opts.customer && opts.signature ? opts.signature : null;
    var who = signature ? { customer_id: opts.customer } : { anonymous_id: anonymousId() };
    function event(type, item, id) {
      var ev = { id: id, type: type, sku: item.sku, source: "widget" };
      if (item.recommendation_id) ev.recommendation_id = item.recommendation_id;
      for (var k in who) ev[k] = who[k];
      return ev;
    }

    var section = el("section", "giftrec");
    section.setAttribute("aria-label", opts.title);
    section.appendChild(el("h3", "giftrec-title", opts.title));
    var viewport = el("div", "giftrec-viewport");
    var track = el("ul", "giftrec-track");
    items.forEach(function (item) {
      var card = el("li", "giftrec-card");
      card.setAttribute("data-sku", item.sku);
      var href = safeUrl(item.url);
      var link = el(href ? "a" : "div", "giftrec-link");
      if (href) link.href = href;
      var src = safeUrl(item.image_url);
      if (src) {
        var img = el("img", "giftrec-img");
        img.loading = "lazy";
        img.alt = item.title;
        img.src = src;
        img.onerror = function () {
          img.replaceWith(el("div", "giftrec-ph", (item.title || "?").charAt(0)));
        };
        link.appendChild(img);
      } else {
        link.appendChild(el("div", "giftrec-ph", (item.title || "?").charAt(0)));
      }
      link.appendChild(el("span", "giftrec-name", item.title));
      link.appendChild(el("span", "giftrec-price", formatPrice(item.price, item.currency)));
      if (item.explanation) link.title = item.explanation;
      link.addEventListener("click", function () {
        sendEvents(opts.key, signature, [event("click", item, "click-" + uuid())]);
      });
      card.appendChild(link);
      track.appendChild(card);
    });
    viewport.appendChild(track);
    section.appendChild(viewport);
    [["giftrec-nav giftrec-prev", "\u2039", -1, "Previous"], ["giftrec-nav giftrec-next", "\u203a", 1, "Next"]].forEach(
      function (spec) {
        var button = el("button", spec[0], spec[1]);
        button.type = "button";
        button.setAttribute("aria-label", spec[3]);
        button.addEventListener("click", function () {
          viewport.scrollBy({ left: spec[2] * viewport.clientWidth * 0.8, behavior: "smooth" });
        });
        section.appendChild(button);
      }
    );
    container.replaceChildren(section);
    container.hidden = false;
    container.setAttribute("data-giftrec-state", "ready");

    var viewed = false;
    function sendViews() {
      if (viewed) return;
      viewed = true;
      var batch = items.map(function (item) {
        return event("view", item, "view-" + (item.recommendation_id || uuid()) + "-" + item.sku);
      });
      sendEvents(opts.key, signature, batch).then(function () {
        container.setAttribute("data-giftrec-viewed", "sent");
      });
    }
    if ("IntersectionObserver" in window) {
      var observer = new IntersectionObserver(
        function (entries) {
          if (entries.some(function (e) { return e.isIntersecting; })) {
            observer.disconnect();
            sendViews();
          }
        },
        { threshold: 0.5 }
      );
      observer.observe(section);
    } else {
      sendViews();
    }
  }

  function fail(container, error) {
    container.replaceChildren();
    container.hidden = true;
    container.setAttribute("data-giftrec-state", "error");
    if (window.console && window.console.debug) window.console.debug("giftrec widget:", error);
  }

  function load(container) {
    if (container.getAttribute("data-giftrec-state")) return;
    container.setAttribute("data-giftrec-state", "loading");
    try {
      var key = container.getAttribute("data-giftrec-key");
      var customer = container.getAttribute("data-customer");
      var signature = container.getAttribute("data-customer-signature");
      var product = container.getAttribute("data-product");
      var count = parseInt(container.getAttribute("data-count") || "8", 10);
      if (!key) throw new Error("data-giftrec-key is missing");
      var params = new URLSearchParams({ n: String(count > 0 && count <= 100 ? count : 8) });
      var path, title;
      if (product) {
        path = "/v1/products/" + encodeURIComponent(product) + "/similar";
        title = "You may also like";
      } else if (customer && signature) {
        path = "/v1/customers/" + encodeURIComponent(customer) + "/recommendations";
        title = "Picked for you";
        [["data-category", "category"], ["data-min-price", "min_price"], ["data-max-price", "max_price"]].forEach(
          function (pair) {
            var value = container.getAttribute(pair[0]);
            if (value) params.set(pair[1], value);
          }
        );
      } else {
        path = "/v1/bestsellers";
        title = "Bestsellers";
      }
      var custom = container.getAttribute("data-title");
      var get = function (where) {
        var headers = { "X-Api-Key": key };
        if (signature && where === path && !product) headers["X-Customer-Signature"] = signature;
        return window.fetch(API + where + "?" + params.toString(), { headers: headers, credentials: "omit" });
      };
      get(path)
        .then(function (resp) {
          if ((resp.status === 404 || resp.status === 401 || resp.status === 403) && customer && !product) {
            // A customer the shop has not sent yet (e.g. signed up a minute ago), or a signature that is
            // missing or expired: show bestsellers, and count views and clicks anonymously.
            customer = null;
            signature = null;
            title = "Bestsellers";
            params.delete("min_price");
            params.delete("max_price");
            return get("/v1/bestsellers");
          }
          return resp;
        })
        .then(function (resp) {
          if (!resp.ok) throw new Error("HTTP " + resp.status);
          return resp.json();
        })
        .then(function (body) {
          if (!body || !body.items || !body.items.length) throw new Error("no items");
          render(container, body.items, {
            key: key,
            customer: customer,
            signature: signature,
            title: custom || title
          });
        })
        .catch(function (error) {
          fail(container, error);
        });
    } catch (error) {
      fail(container, error);
    }
  }

  function start() {
    var nodes = document.querySelectorAll("[data-giftrec-key]");
    for (var i = 0; i < nodes.length; i++) load(nodes[i]);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
