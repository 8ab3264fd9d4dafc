"use strict";
// The hand-off page. The code travels in the URL's fragment, which no
// request carries; the page takes it, drops it from the address bar and
// the history at once, and sends it only in the body of its own POSTs.
(function () {
  var $ = function (id) { return document.getElementById(id); };
  var code = "";
  try { code = decodeURIComponent(location.hash.slice(1)); } catch (e) { code = ""; }
  if (location.hash) { history.replaceState(null, "", location.pathname + location.search); }
  var key = "";

  function say(id, text, cls) {
    var el = $(id);
    el.textContent = text;
    el.className = cls || "";
  }

  function call(what) {
    return fetch("handoff/" + what, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ code: code }),
      credentials: "omit", cache: "no-store", referrerPolicy: "no-referrer"
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (data) {
        return { ok: r.ok, status: r.status, data: data };
      });
    });
  }

  function failed(id, res) {
    var msg = (res.data && res.data.error) || ("The server answered " + res.status + ".");
    say(id, msg, "bad");
  }

  if (!code) {
    say("status", "This link holds no hand-off code. Open the link from your message as it is.", "bad");
    return;
  }

  call("lookup").then(function (res) {
    if (!res.ok) { failed("status", res); return; }
    var d = res.data;
    $("integration").textContent = d.integration;
    $("keyid").textContent = d.key;
    $("fingerprint").textContent = d.fingerprint;
    $("about").hidden = false;
    if (d.state === "unopened") {
      say("status", "Ready.");
      $("expires").textContent = "The code works until " + new Date(d.expires).toLocaleString() + ".";
      $("revealbox").hidden = false;
    } else {
      say("status", d.detail || ("This code is " + d.state + "."), "bad");
    }
  }, function () { say("status", "The server could not be reached.", "bad"); });

  $("reveal").addEventListener("click", function () {
    $("reveal").disabled = true;
    call("reveal").then(function (res) {
      if (!res.ok) { failed("result", res); return; }
      key = res.data.key;
      $("key").textContent = key;
      $("instructions").textContent = res.data.instructions ? "What to do: " + res.data.instructions : "";
      $("revealbox").hidden = true;
      $("keybox").hidden = false;
      say("status", "Opened. The code opens nothing more.");
    }, function () { $("reveal").disabled = false; say("result", "The server could not be reached; try again.", "bad"); });
  });

  $("copy").addEventListener("click", function () {
    function selectKey() {
      var range = document.createRange();
      range.selectNodeContents($("key"));
      var sel = window.getSelection();
      sel.removeAllRanges();
      sel.addRange(range);
      return sel;
    }
    var done = function () { $("copied").textContent = "Copied."; };
    if (navigator.clipboard && navigator.clipboard.writeText) {
      navigator.clipboard.writeText(key).then(done, function () {
        selectKey();
        $("copied").textContent = document.execCommand("copy") ? "Copied." : "Selected: press Ctrl+C (⌘C).";
      });
    } else {
      selectKey();
      $("copied").textContent = document.execCommand("copy") ? "Copied." : "Selected: press Ctrl+C (⌘C).";
    }
  });

  $("pasted").addEventListener("click", function () {
    $("pasted").disabled = true;
    say("result", "Recording it and checking…");
    call("confirm").then(function (res) {
      if (!res.ok) { $("pasted").disabled = false; failed("result", res); return; }
      var d = res.data;
      if (d.state === "current") {
        key = "";
        $("key").textContent = "(hidden: pasted)";
        $("copy").disabled = true;
        say("result", "Thank you: " + d.integration + " is recorded as current (" + d.reason + ").", "good");
      } else {
        $("pasted").disabled = false;
        say("result", "Recorded, but " + d.integration + " is " + d.state + ": " + d.reason, "bad");
      }
    }, function () { $("pasted").disabled = false; say("result", "The server could not be reached; try again.", "bad"); });
  });
}());
