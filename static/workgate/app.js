// Small enhancements shared by every page; each page works without them.

// A form that takes a while (launching a desktop) shows that it is busy and cannot be sent twice.
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
    event.preventDefault();
    return;
  }
  const button = event.submitter;
  if (button && form.dataset.busy !== undefined) {
    button.setAttribute("aria-busy", "true");
    if (button.dataset.busyLabel) button.textContent = button.dataset.busyLabel;
    // Disable after the submission has been collected, or the button's value would be lost.
    setTimeout(() => { button.disabled = true; }, 0);
  }
});

// A workspace thumbnail that cannot load leaves the icon underneath visible.
for (const img of document.querySelectorAll("img[data-fallback]")) {
  const drop = () => img.remove();
  if (img.complete && img.naturalWidth === 0) drop();
  else img.addEventListener("error", drop);
}
