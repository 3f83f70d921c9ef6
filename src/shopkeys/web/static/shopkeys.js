// shopkeys' pages work without this script; it only adds copy buttons and confirmations.
"use strict";
document.addEventListener("click", async (event) => {
  const button = event.target.closest("[data-copy]");
  if (!button) return;
  const source = document.getElementById(button.dataset.copy);
  if (!source) return;
  const text = "value" in source ? source.value : source.textContent;
  try {
    await navigator.clipboard.writeText(text);
    button.textContent = "Copied";
  } catch {
    // No clipboard (an address that is not https or localhost): select it to copy by hand.
    if (source.select) source.select();
    button.textContent = "Press Ctrl+C";
  }
  const status = document.getElementById(button.dataset.copy + "-status");
  if (status) status.textContent = button.textContent;
});
document.addEventListener("submit", (event) => {
  const message = event.target.dataset.confirm;
  if (message && !window.confirm(message)) event.preventDefault();
});
