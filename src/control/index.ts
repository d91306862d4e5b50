export { createControlService, toAgentMessage } from "./control-service.js";
