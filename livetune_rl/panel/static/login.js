"use strict";
// The login form posts the token; a wrong one comes back to /login#wrong.
document.getElementById("wrong").hidden = location.hash !== "#wrong";
