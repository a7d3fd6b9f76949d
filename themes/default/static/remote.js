// Progressive enhancement for following and replying from another server. Without
// JavaScript the handle (or the post's address) is shown to paste into a fediverse app and
// the buttons are plain links to those instructions. With it, "Copy" copies the handle and
// "Follow" / "Reply" ask the reader for their server, then send them to its
// `authorize_interaction` page (Mastodon's remote interaction), where they confirm.
(function () {
  "use strict";

  Array.prototype.forEach.call(document.querySelectorAll("button[data-copy]"), function (button) {
    if (!navigator.clipboard || !window.isSecureContext) return;
    var label = button.textContent;
    button.hidden = false;
    button.addEventListener("click", function () {
      navigator.clipboard.writeText(button.getAttribute("data-copy")).then(
        function () {
          button.textContent = "Copied";
        },
        function () {
          button.textContent = "Select and copy";
        }
      );
      setTimeout(function () {
        button.textContent = label;
      }, 2000);
    });
  });

  var dialog = document.getElementById("remote-interact");
  if (!dialog || typeof dialog.showModal !== "function") return;
  var form = dialog.querySelector("form");
  var input = dialog.querySelector("input[name=server]");
  var title = document.getElementById("remote-interact-title");
  var error = dialog.querySelector(".remote-interact-error");
  var uri = "";
  var remembered = "relais-remote-server";

  // "mastodon.social", "https://mastodon.social/", "@me@mastodon.social" → "mastodon.social".
  function serverOf(text) {
    var value = (text || "").trim().replace(/^[a-z][a-z0-9+.-]*:\/\//i, "");
    value = value.split(/[/?#]/)[0];
    var at = value.lastIndexOf("@");
    if (at >= 0) value = value.slice(at + 1);
    value = value.toLowerCase();
    return /^[a-z0-9-]+(\.[a-z0-9-]+)+(:\d{1,5})?$/.test(value) ? value : null;
  }

  Array.prototype.forEach.call(document.querySelectorAll("a[data-interact]"), function (a) {
    a.addEventListener("click", function (event) {
      event.preventDefault();
      uri = a.getAttribute("data-interact");
      title.textContent = a.getAttribute("data-interact-title") || a.textContent;
      error.hidden = true;
      try {
        input.value = localStorage.getItem(remembered) || "";
      } catch (e) {}
      dialog.showModal();
      input.focus();
      input.select();
    });
  });

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var server = serverOf(input.value);
    if (!server) {
      error.textContent = "Type your server's address, such as mastodon.social.";
      error.hidden = false;
      input.focus();
      return;
    }
    try {
      localStorage.setItem(remembered, server);
    } catch (e) {}
    dialog.close();
    window.location.assign(
      "https://" + server + "/authorize_interaction?uri=" + encodeURIComponent(uri)
    );
  });

  dialog.querySelector(".dialog-cancel").addEventListener("click", function () {
    dialog.close();
  });
})();
