// Progressive enhancement: the page was built with the replies and reactions known at build
// time; this asks the inbox for fresh ones and redraws them. Without JavaScript, or when the
// inbox cannot be reached, the built list stays as it is.
(function () {
  "use strict";
  var section = document.getElementById("interactions");
  var source = section && section.getAttribute("data-source");
  if (!source || !window.fetch) return;

  function safeUrl(url) {
    return /^https?:\/\//i.test(url || "") ? url : null;
  }

  function link(url, text, className) {
    var a = document.createElement(safeUrl(url) ? "a" : "span");
    if (safeUrl(url)) a.href = url;
    if (className) a.className = className;
    a.textContent = text;
    return a;
  }

  function avatar(url, size, className) {
    if (!safeUrl(url)) return null;
    var img = document.createElement("img");
    img.src = url;
    img.alt = "";
    img.width = size;
    img.height = size;
    img.loading = "lazy";
    if (className) img.className = className;
    return img;
  }

  // Reply times as the build prints them: the site's pattern and month names, in UTC.
  var timeFormat = section.getAttribute("data-time-format") || "%-d %B %Y, %H:%M UTC";
  var months = (section.getAttribute("data-months") || "").split("|");

  function pad(n) {
    return (n < 10 ? "0" : "") + n;
  }

  function formatTime(iso) {
    var d = new Date(iso);
    if (isNaN(d.getTime())) return iso || "";
    var parts = {
      "-d": String(d.getUTCDate()),
      d: pad(d.getUTCDate()),
      B: months[d.getUTCMonth()] || String(d.getUTCMonth() + 1),
      m: pad(d.getUTCMonth() + 1),
      Y: String(d.getUTCFullYear()),
      H: pad(d.getUTCHours()),
      M: pad(d.getUTCMinutes()),
      "%": "%",
    };
    return timeFormat.replace(/%(-d|[dBmYHM%])/g, function (all, key) {
      return parts[key];
    });
  }

  // Same rule as the build's `reactor_name`: a profile that could not be fetched leaves
  // the actor URL as the name; show `user@host` from it instead.
  function reactorName(r) {
    var name = (r.name || "").trim();
    if (name && !/^https?:\/\//i.test(name)) return name;
    try {
      var url = new URL(name || r.actor_id);
      var user = url.pathname.split("/").filter(Boolean).pop() || "";
      user = user.replace(/^@+/, "");
      if (user && url.hostname) return user + "@" + url.hostname;
      if (url.hostname) return url.hostname;
    } catch (e) {}
    return "someone";
  }

  function initial(name) {
    var match = /[\p{L}\p{N}]/u.exec(name);
    return match ? match[0].toUpperCase() : "?";
  }

  function plural(n, one, many) {
    return n + " " + (n === 1 ? one : many);
  }

  function counts(data) {
    var p = document.createElement("p");
    p.className = "reaction-counts";
    p.textContent =
      plural(data.likes.length, "like", "likes") + " · " + plural(data.boosts.length, "boost", "boosts");
    return p;
  }

  function reactors(data) {
    var ul = document.createElement("ul");
    ul.className = "reactors";
    ul.setAttribute("aria-label", "People who liked or boosted this post");
    data.likes.concat(data.boosts).forEach(function (r) {
      var li = document.createElement("li");
      var name = reactorName(r);
      var a = link(r.url, "", null);
      a.title = name;
      var img = avatar(r.avatar, 32, null);
      if (img) {
        img.alt = name;
        a.appendChild(img);
      } else {
        var fallback = document.createElement("span");
        fallback.className = "avatar-fallback";
        fallback.setAttribute("role", "img");
        fallback.setAttribute("aria-label", name);
        fallback.textContent = initial(name);
        a.appendChild(fallback);
      }
      li.appendChild(a);
      ul.appendChild(li);
    });
    return ul;
  }

  function quotes(data) {
    var title = document.createElement("p");
    title.className = "quoted-by-title";
    title.textContent = "Quoted by";
    var ul = document.createElement("ul");
    ul.className = "quoted-by";
    data.quotes.forEach(function (q) {
      var li = document.createElement("li");
      var name = reactorName(q);
      var a = link(q.url, "", null);
      var img = avatar(q.avatar, 32, null);
      if (img) {
        img.alt = "";
        a.appendChild(img);
      } else {
        var fallback = document.createElement("span");
        fallback.className = "avatar-fallback";
        fallback.setAttribute("aria-hidden", "true");
        fallback.textContent = initial(name);
        a.appendChild(fallback);
      }
      a.appendChild(document.createTextNode(" " + name));
      li.appendChild(a);
      ul.appendChild(li);
    });
    return [title, ul];
  }

  function replies(data) {
    var ol = document.createElement("ol");
    ol.className = "replies";
    data.replies.forEach(function (reply) {
      var li = document.createElement("li");
      li.className = "reply";
      li.style.setProperty("--depth", String(reply.depth || 0));
      var article = document.createElement("article");
      var header = document.createElement("header");
      var img = avatar(reply.author_avatar, 40, "avatar");
      if (img) header.appendChild(img);
      header.appendChild(link(reply.author_url, reply.author_name, "author"));
      var handle = document.createElement("span");
      handle.className = "handle-small";
      handle.textContent = " " + reply.author_handle + " ";
      header.appendChild(handle);
      var time = document.createElement("time");
      time.dateTime = reply.published;
      time.textContent = formatTime(reply.published);
      var when = link(reply.url, "", "reply-time");
      when.appendChild(time);
      header.appendChild(when);
      var content = document.createElement("div");
      content.className = "reply-content";
      // The inbox stored this HTML sanitized to Mastodon's safe subset.
      content.innerHTML = reply.content;
      article.appendChild(header);
      article.appendChild(content);
      li.appendChild(article);
      ol.appendChild(li);
    });
    return ol;
  }

  fetch(source, { headers: { Accept: "application/json" } })
    .then(function (response) {
      return response.ok ? response.json() : null;
    })
    .then(function (data) {
      if (!data || !Array.isArray(data.replies)) return;
      var old = section.querySelectorAll(".reaction-counts, .reactors, .quoted-by-title, .quoted-by, .replies, .no-replies");
      Array.prototype.forEach.call(old, function (node) {
        node.parentNode.removeChild(node);
      });
      var title = document.getElementById("interactions-title");
      var after = title;
      var parts = [];
      if (data.likes.length || data.boosts.length) parts.push(counts(data), reactors(data));
      if (Array.isArray(data.quotes) && data.quotes.length) parts = parts.concat(quotes(data));
      if (data.replies.length) {
        parts.push(replies(data));
      } else {
        var none = document.createElement("p");
        none.className = "no-replies";
        none.textContent = "No replies yet.";
        parts.push(none);
      }
      parts.forEach(function (node) {
        after.parentNode.insertBefore(node, after.nextSibling);
        after = node;
      });
    })
    .catch(function () {});
})();
