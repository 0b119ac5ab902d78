// Progressive enhancement only: the pages work without it.
// Dates are sent as <time datetime="ISO">text</time>, the text in UTC in the locale the server
// chose from Accept-Language (<html data-locale>); show them in the browser's time zone.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  var locale = document.documentElement.getAttribute("data-locale");
  var format;
  try {
    format = new Intl.DateTimeFormat(locale ? [locale] : undefined,
                                     { dateStyle: "medium", timeStyle: "short" });
  } catch (e) {
    format = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
  }
  document.querySelectorAll("time[datetime]").forEach(function (el) {
    var when = new Date(el.getAttribute("datetime"));
    if (!isNaN(when.getTime())) {
      el.title = el.textContent;
      el.textContent = format.format(when);
    }
  });
});
